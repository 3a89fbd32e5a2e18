"""The example workflows of examples/ at toy size, run as a user runs them (their run.sh, with the
installed `mlffc` on PATH), so that they cannot rot. Each writes into its own temporary directory."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlffc.runtime.manifest import Manifest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def run_example(name: str, workdir: Path, **env: str) -> subprocess.CompletedProcess:
    """`examples/NAME/run.sh --toy WORKDIR` with this interpreter's environment first on PATH."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    result = subprocess.run([str(EXAMPLES / name / "run.sh"), "--toy", str(workdir)], capture_output=True, text=True,
                            env=environment, timeout=900)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def smiles_example(tmp_path_factory):
    """Example 1 run once: its artifact drives example 4 too (a compile is most of each example's time)."""
    workdir = tmp_path_factory.mktemp("example-01")
    return workdir, run_example("01-smiles-student", workdir)


def test_every_example_has_a_readme_and_a_script():
    for name in ("01-smiles-student", "02-periodic-liquid", "03-gpu-target", "04-md"):
        assert (EXAMPLES / name / "README.md").is_file(), name
        assert os.access(EXAMPLES / name / "run.sh", os.X_OK), name


def test_smiles_student(smiles_example):
    workdir, result = smiles_example
    manifest = Manifest.read(workdir / "artifact")
    assert manifest.model.architecture == "moment" and manifest.target.name == "cpu"
    check = json.loads((workdir / "check.json").read_text())
    assert check["frames"] > 0 and check["split"] == "test"
    teacher = check["vs_teacher"]
    assert finite(teacher["force_mae"], teacher["energy_mae_per_atom"]) and teacher["force_mae"] > 0
    assert check["vs_eager"]["forces"] < 1e-2  # compiled agrees with eager whatever the toy student's accuracy
    assert is_png(workdir / "parity.png") and is_png(workdir / "run" / "loss_curve.png")
    assert "check artifact on" in result.stdout


def test_periodic_liquid(tmp_path):
    run_example("02-periodic-liquid", tmp_path)
    record = json.loads((tmp_path / "distill" / "distill.json").read_text())
    assert Path(record["best"]).name == "student.safetensors"
    md = json.loads((tmp_path / "check.json").read_text())["md"]
    for who in ("artifact", "teacher"):
        box = md["runs"][who]["nve_box"]
        assert box["stable"] and box["atoms"] == 81, (who, box)
        assert finite(box["drift_ev_per_atom_per_ps"], md["runs"][who]["nvt_box"]["temperature_mean_K"])
        assert len(md["runs"][who]["nvt_box"]["g"]) == len(md["runs"][who]["nvt_box"]["r"]) > 0
    assert finite(md["rdf_error"]) and md["rdf_error"] >= 0
    assert is_png(tmp_path / "rdf.png") and is_png(tmp_path / "parity.png")


def test_gpu_target(tmp_path):
    result = run_example("03-gpu-target", tmp_path)
    assert "lower with backend aoti for cuda sm_" in result.stdout
    if torch.cuda.is_available():
        check = json.loads((tmp_path / "check.json").read_text())
        assert check["passed"] and check["vs_eager"]["forces"] < 1e-2
    else:
        assert "no CUDA GPU visible" in result.stdout and not any(tmp_path.iterdir())


def test_md(smiles_example, tmp_path):
    result = run_example("04-md", tmp_path, ARTIFACT=str(smiles_example[0] / "artifact"))
    md = json.loads((tmp_path / "md.json").read_text())
    assert md["atoms"] == 81 and md["periodic"]
    nve = md["nve"]
    assert finite(nve["drift_ev_per_atom_per_ps"], nve["fluctuation_ev_per_atom"], nve["temperature_mean_K"])
    assert nve["steps"] == 200 and md["langevin"]["steps"] == 100
    assert 50 < nve["temperature_mean_K"] < 2000  # moving, not exploded
    assert len(md["trace"]["time_ps"]) == (100 + 200) // 10 + 2  # every 10th step of each phase, and each start
    assert is_png(tmp_path / "energy.png") and is_png(tmp_path / "temperature.png")
    assert "NVE drift" in result.stdout
