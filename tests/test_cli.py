"""The command line end to end on a tiny problem, and its error messages."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def mlffc(*args, cwd=None, env=None):
    environment = None if env is None else {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "mlffc", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=environment)


def test_lists():
    for command, expected in (("teachers", "ani1x"), ("students", "moment"), ("targets", "a100")):
        result = mlffc(command)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_teachers_table_shows_every_model_and_its_capabilities():
    from mlffc.teachers import orb

    lines = mlffc("teachers").stdout.splitlines()
    for name in ("ani1x", "ani1ccx", "fennol:PATH.fnx[,PATH...]", *orb.MODELS):
        assert any(line.startswith(f"│ {name} ") for line in lines), name
    omol = next(line for line in lines if line.startswith("│ orb-v3-direct-omol "))
    assert [cell.strip() for cell in omol.split("│")[4:10]] == ["6", "-", "-", "yes", "-", "needs file"]


def test_unknown_seed_set_and_teacher(tmp_path):
    result = mlffc("generate", "--out", tmp_path / "d.h5", "--seeds", "liquids")
    assert result.returncode == 2 and "seeds 'liquids': neither a bundled set" in result.stderr
    result = mlffc("generate", "--out", tmp_path / "d.h5", "--teacher", "orb-v9")
    assert result.returncode == 2 and "unknown teacher 'orb-v9'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_generate_crystals_with_random_init_orb(tmp_path):
    """Orb end to end on small periodic cells (9 of them: a dense metal costs ~0.1 s per atom here),
    untrained weights said loudly and recorded."""
    from mlffc.data.storage import read_frames

    data = tmp_path / "cu.h5"
    result = mlffc("generate", "--teacher", "orb-v3-direct-inf-omat", "--random-init", 0, "--seeds", "crystals",
                   "--limit", 3, "--rattles-per-scale", 0, "--strains-per-scale", 0, "--out", data,
                   env={"OMP_NUM_THREADS": "1"})  # tiny Orb calls: one thread is faster
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stderr
    frames = read_frames(data)
    assert frames.attrs["teacher"]["source"]["random_init"] == 0
    assert frames.pbc.all() and frames.stress is not None and np.abs(frames.stress).max() > 0
    assert set(frames.group.tolist()) == {"bulk/Cu_fcc", "bulk/Al_fcc", "bulk/Ni_fcc"}
    assert set(frames.split.tolist()) == {0, 1, 2}
    assert set(frames.sampler.tolist()) == {"seed"}  # samplers: tests/test_orb.py; crystal MD is opt-in
    result = mlffc("generate", "--teacher", "orb-v3-direct-omol", "--random-init", 0, "--seeds", "crystals",
                   "--out", tmp_path / "no.h5")
    assert result.returncode == 2 and "does not take periodic cells" in result.stderr


def test_shard_options_are_checked_before_any_work(tmp_path):
    result = mlffc("generate", "--out", tmp_path / "d", "--shard", 1)
    assert result.returncode == 2 and "need --shards" in result.stderr
    result = mlffc("generate", "--out", tmp_path / "d", "--shards", 2, "--shard", 2)
    assert result.returncode == 2 and "--shard in 0..1" in result.stderr
    assert not (tmp_path / "d").exists()


def test_missing_artifact_is_a_clear_error(tmp_path):
    result = mlffc("check", tmp_path / "nothing", "--data", tmp_path / "none.h5")
    assert result.returncode == 2
    assert "artifact not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    result = mlffc("train", "--data", tmp_path / "none.h5", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "dataset not found" in result.stderr and "Traceback" not in result.stderr


def test_unknown_target(tmp_path):
    result = mlffc("compile", tmp_path / "s.safetensors", "--target", "tpu9", "--out", tmp_path / "a")
    assert result.returncode == 2 and "unknown target 'tpu9'" in result.stderr


def test_plan_needs_no_gpu():
    result = mlffc("compile", "--target", "h100", "--plan")
    assert result.returncode == 0 and "sm_90" in result.stdout


@pytest.mark.slow
def test_pipeline_generate_train_compile_check(tmp_path):
    data, run, artifact = tmp_path / "d.h5", tmp_path / "run", tmp_path / "art"
    result = mlffc("generate", "--out", data, "--limit", 12, "--md-steps", 16, "--rattles-per-scale", 2)
    assert result.returncode == 0, result.stderr
    assert mlffc("generate", "--out", data, "--limit", 2).returncode == 2  # never overwrites silently
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nstudent: {channels: 8, hidden: [16]}\n")
    result = mlffc("train", config, "--data", data, "--out", run)
    assert result.returncode == 0, result.stderr
    assert (run / "student.safetensors").exists() and (run / "loss_curve.png").exists()
    result = mlffc("compile", run / "student.safetensors", "--target", "cpu", "--data", data, "--out", artifact)
    assert result.returncode == 0, result.stderr
    report = tmp_path / "report.json"
    result = mlffc("check", artifact, "--data", data, "--max-force-mae", 100, "--max-energy-mae", 100,
                   "--plot", tmp_path / "parity.png", "--json", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report.read_text())["passed"] and (tmp_path / "parity.png").exists()
    result = mlffc("check", artifact, "--data", data, "--max-force-mae", 1e-6)
    assert result.returncode == 1 and "FAILED" in result.stdout


def test_check_needs_data_or_md(tmp_path):
    result = mlffc("check", tmp_path / "artifact")
    assert result.returncode == 2 and "--data" in result.stderr and "--md" in result.stderr


@pytest.mark.slow
def test_check_md_runs_artifact_and_teacher(artifact, tmp_path):
    """Short NVE and NVT runs with both; a zero drift limit must fail, and say so."""
    report, plot = tmp_path / "md.json", tmp_path / "rdf.png"
    result = mlffc("check", artifact, "--md", "--md-molecule", "CH3OH", "--md-box", 27, "--md-steps", 40,
                   "--rdf-steps", 20, "--equilibration", 10, "--max-drift", 0, "--max-rdf-error", 1e9,
                   "--rdf-plot", plot, "--json", report)
    assert result.returncode == 1 and "FAILED" in result.stdout, result.stdout + result.stderr
    md = json.loads(report.read_text())["md"]
    assert md["teacher"] == "ani1x" and plot.exists()
    for label in ("artifact", "teacher"):
        runs = md["runs"][label]
        assert runs["nve_molecule"]["atoms"] == 6 and runs["nve_box"]["atoms"] == 81
        assert runs["nve_box"]["stable"] and runs["nvt_box"]["frames"] == 2  # steps 20 and 30
        assert np.isfinite(runs["nve_molecule"]["drift_ev_per_atom_per_ps"])
    assert any(f.startswith("nve_molecule drift") for f in md["failures"]) and np.isfinite(md["rdf_error"])


def test_plan_shows_passes_and_backend():
    result = mlffc("compile", "--target", "cpu", "--backend", "onnxruntime", "--plan")
    assert result.returncode == 0, result.stderr
    assert "lower_broadcasts_to_matmuls" in result.stdout and "backend onnxruntime" in result.stdout
    assert "fuse_edge_scatter" not in result.stdout  # onnxruntime cannot run the fused ops
    result = mlffc("compile", "--target", "cpu", "--passes", "fuse_edge_scatter,remove_dead_code", "--precision", "bf16", "--plan")
    assert result.returncode == 0 and "fuse_edge_scatter" in result.stdout and "precision bf16" in result.stdout


def test_plan_of_backend_auto_names_the_backends_tried():
    result = mlffc("compile", "--target", "cpu", "--backend", "auto", "--plan")
    assert result.returncode == 0, result.stderr
    assert "try every backend of target cpu that lowers for cpu: aoti, onnxruntime, tvm" in " ".join(result.stdout.split())
    assert "backend_selection" in result.stdout
    help_text = " ".join(mlffc("compile", "--help").stdout.replace("│", " ").split())  # rich's box, unwrapped
    assert "auto: lower with every backend installed for the target's device" in help_text


def test_unknown_pass_and_precision_are_clear_errors():
    result = mlffc("compile", "--target", "cpu", "--passes", "fuse_everything", "--plan")
    assert result.returncode == 2 and "unknown pass 'fuse_everything'" in result.stderr
    assert "Traceback" not in result.stderr
