"""Issue 11: gates that cannot be fooled, files that are never lost, loaders that run no one's code,
bad input refused with an MlffcError before any work. Each test reproduces one probe."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from mlffc.check import Limits, check_artifact, check_limits, gate
from mlffc.compiler import check_destination, compile_student, replaceable_artifact, resolve_target
from mlffc.data.storage import read_frames, write_frames
from mlffc.errors import MlffcError
from mlffc.io import atomic_directory, write_json
from mlffc.runtime import load
from mlffc.runtime.manifest import MANIFEST, sha256_file
from mlffc.structures import check_structures
from mlffc.trainers import TrainConfig, train
from mlffc.trainers.distill import LEGACY_STATE_FILE, STATE_FILE
from mlffc.trainers.state import load_state, save_state

TINY = {"channels": 4, "hidden": [8], "interactions": 1}


def mlffc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlffc", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _config(data, **changes):
    settings = dict(data=str(data), epochs=1, student=TINY, max_atoms_per_batch=96, tensorboard=False, threads=1)
    return TrainConfig(**{**settings, **changes})


# --- a gate that passes garbage ---------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_gate_fails_every_non_finite_metric_naming_it(value):
    assert "force_mae = nan is not finite" in gate("force_mae", float("nan"), 0.1)
    assert gate("x", value, 1e9) is not None and gate("x", 0.05, 0.1) is None and gate("x", 0.0, 0.0) is None
    with pytest.raises(MlffcError, match="limit force_mae must be a finite number >= 0"):
        check_limits({"force_mae": value})


def test_check_fails_on_nan_labels_and_keeps_a_zero_limit(tmp_path, artifact, small_data):
    frames = read_frames(small_data)
    test_atoms = np.repeat(frames.split == 2, frames.natoms)
    frames.forces[np.flatnonzero(test_atoms)[0], 0] = np.nan
    write_frames(tmp_path / "nan.h5", frames)
    report = check_artifact(artifact, tmp_path / "nan.h5", Limits(force_mae=1e9, energy_mae_per_atom=1e9))
    assert not report["passed"] and any("force_mae = nan is not finite" in f for f in report["failures"]), report["failures"]
    zero = check_artifact(artifact, small_data, Limits(force_mae=1e9, energy_mae_per_atom=1e9, compiled_vs_eager_forces=0.0))
    assert zero["limits"]["compiled_vs_eager_forces"] == 0.0  # `or` replaced it by the accepted tolerance


def test_manifest_and_records_never_hold_nan(tmp_path):
    with pytest.raises(MlffcError, match=r"accuracy.vs_eager.forces = nan"):
        write_json(tmp_path / "m.json", {"accuracy": {"vs_eager": {"forces": float("nan")}}})
    assert not (tmp_path / "m.json").exists()
    write_json(tmp_path / "r.json", {"rdf_error": float("inf")}, strict=False)
    assert json.loads((tmp_path / "r.json").read_text()) == {"rdf_error": None}  # standard JSON


def test_training_refuses_a_nan_label_naming_its_frame(tmp_path, small_data):
    frames = read_frames(small_data)
    train_frame = int(np.flatnonzero(frames.split == 0)[3])
    frames.forces[frames.offsets[train_frame] + 1, 2] = np.nan
    write_frames(tmp_path / "nan.h5", frames)
    with pytest.raises(MlffcError, match=rf"1 train/val frame\(s\) with NaN .*: {frames.group[train_frame]} \("):
        train(_config(tmp_path / "nan.h5"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_training_stops_on_a_non_finite_loss_naming_the_batch(tmp_path, small_data, monkeypatch):
    """A loss that turns NaN mid-run (a diverging student): stopped before the step, named, and
    neither the checkpoint nor the resume state holds a NaN."""
    import mlffc.trainers.distill as distill

    calls = {"n": 0}
    real = distill.loss_sums

    def diverging(errors, config):
        sums = real(errors, config)
        calls["n"] += 1
        if calls["n"] == 3:
            sums["forces"] = sums["forces"] * float("nan")
        return sums

    monkeypatch.setattr(distill, "loss_sums", diverging)
    with pytest.raises(MlffcError, match=r"loss is not finite at epoch 1, step 3 \(terms: forces\) on the train-split frames \d+ \(g2/"):
        train(_config(small_data, epochs=2), tmp_path / "run", stop_after_steps=None)
    assert not (tmp_path / "run" / "student.safetensors").exists()
    if (tmp_path / "run" / STATE_FILE).exists():
        for value in load_state(tmp_path / "run" / STATE_FILE)["student"].values():
            assert torch.isfinite(value).all()


def test_nan_student_is_refused_by_save_and_by_compile(tmp_path, trained_run):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mlffc.students import save_student

    good = trained_run[0] / "student.safetensors"
    state = load_file(str(good))
    with safe_open(str(good), framework="pt") as handle:
        metadata = handle.metadata()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name][0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"), metadata=metadata)  # as a diverged run would have
    with pytest.raises(MlffcError, match=rf"weight {name} holds 1 NaN"):
        compile_student(tmp_path / "nan.safetensors", resolve_target("cpu"), tmp_path / "art")
    assert not (tmp_path / "art").exists()
    student = trained_run[1]
    broken = type(student)(**student.config())
    broken.load_state_dict(state)
    with pytest.raises(MlffcError, match="refusing to save"):
        save_student(broken, tmp_path / "s.safetensors")
    assert not (tmp_path / "s.safetensors").exists()


def test_train_refuses_data_that_validation_rejects(tmp_path, small_data):
    frames = read_frames(small_data)
    frames.positions *= 100.0  # positions in the wrong units: `data validate` passed this before
    write_frames(tmp_path / "big.h5", frames)
    result = mlffc("train", "--data", tmp_path / "big.h5", "--out", tmp_path / "run", "--epochs", 1)
    assert result.returncode == 2 and "units of positions" in result.stderr and "--accept-invalid-data" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
    assert mlffc("data", "validate", tmp_path / "big.h5").returncode == 1


# --- data loss ---------------------------------------------------------------------------------

def _fake_artifact(path: Path, extra: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "model.pt2").write_bytes(b"x")
    (path / "student.safetensors").write_bytes(b"y")
    write_json(path / MANIFEST, {"payload": {"model.pt2": "0" * 64}, "model": {"checkpoint": {"file": "student.safetensors"}}})
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    return path


def test_out_over_a_foreign_directory_deletes_nothing(tmp_path, trained_run):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("train_state.safetensors", "history.json", "notes.txt"):
        (run / name).write_text(name)
    with pytest.raises(MlffcError, match="not an earlier mlffc artifact"):
        compile_student(trained_run[0] / "student.safetensors", resolve_target("cpu"), run)
    assert sorted(p.name for p in run.iterdir()) == ["history.json", "notes.txt", "train_state.safetensors"]
    with pytest.raises(MlffcError, match="holds notes.txt, which compile did not make"):
        replaceable_artifact(_fake_artifact(tmp_path / "a", {"notes.txt": "mine"}))
    replaceable_artifact(_fake_artifact(tmp_path / "b"))  # ours alone: may be replaced
    with atomic_directory(tmp_path / "b", may_replace=replaceable_artifact) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_out_never_the_working_directory_a_parent_of_inputs_or_a_file(tmp_path, monkeypatch):
    student = tmp_path / "runs" / "r1" / "student.safetensors"
    student.parent.mkdir(parents=True)
    student.write_bytes(b"s")
    monkeypatch.chdir(tmp_path / "runs")
    for out, message in ((Path("."), "the working directory"), (tmp_path, "the working directory"),
                         (student.parent, "the input"), (student, "is a file")):
        with pytest.raises(MlffcError, match=message):
            check_destination(out, [student])
    result = mlffc("compile", student, "--out", ".", cwd=tmp_path / "runs")
    assert result.returncode == 2 and "working directory" in result.stderr and student.exists()


# --- code execution and path traversal ---------------------------------------------------------

class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_state_runs_no_code(tmp_path, small_data):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    (run / LEGACY_STATE_FILE).write_bytes(pickle.dumps({"config": _Exploit(marker)}))
    with pytest.raises(MlffcError, match="pickled state of an older mlffc, which is not loaded"):
        train(_config(small_data), run)
    (run / STATE_FILE).write_bytes(pickle.dumps({"config": _Exploit(marker)}))  # a pickle under the new name
    with pytest.raises(MlffcError, match="not a readable mlffc training state.*--restart"):
        train(_config(small_data), run)
    assert not marker.exists()


def test_state_round_trips_without_pickle_and_a_cut_file_is_named(tmp_path):
    rng = np.random.default_rng(3)
    state = {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "opt": {0: {"step": torch.tensor(5.0)}},
             "betas": (0.9, 0.999), "best": float("inf"), "batches": [np.arange(4), np.array([7])], "none": None}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert back["rng"] == state["rng"] and torch.equal(back["torch_rng"], state["torch_rng"])
    assert back["opt"][0]["step"].item() == 5.0 and back["betas"] == (0.9, 0.999) and back["best"] == float("inf")
    assert [b.tolist() for b in back["batches"]] == [[0, 1, 2, 3], [7]] and back["none"] is None
    data = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MlffcError, match="cut.safetensors is not a readable mlffc training state"):
        load_state(tmp_path / "cut.safetensors")


def _spoiled(artifact, tmp_path, spoil) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    spoil(manifest, copy)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


def _outside_library(manifest, copy):
    outside = copy.parent / "evil.so"
    shutil.copyfile(copy / manifest["backend"]["entry"], outside)
    manifest["payload"]["../evil.so"] = sha256_file(outside)
    manifest["backend"]["libraries"] = ["../evil.so"]


def _absolute_library(manifest, copy):
    outside = copy.parent / "evil.so"
    shutil.copyfile(copy / manifest["backend"]["entry"], outside)
    manifest["payload"][str(outside)] = sha256_file(outside)
    manifest["backend"]["libraries"] = [str(outside)]


def _symlinked_library(manifest, copy):
    outside = copy.parent / "evil.so"
    shutil.copyfile(copy / manifest["backend"]["entry"], outside)
    (copy / "link.so").symlink_to(outside)
    manifest["payload"]["link.so"] = sha256_file(outside)
    manifest["backend"]["libraries"] = ["link.so"]


def _unlisted_entry(manifest, copy):
    entry = manifest["backend"]["entry"]
    shutil.copyfile(copy / entry, copy / "other.pt2")
    manifest["backend"]["entry"] = "other.pt2"


SPOILS = {
    "dotdot library": (_outside_library, "resolves to .*evil.so, outside the artifact"),
    "absolute library": (_absolute_library, "only relative names inside the artifact"),
    "symlink out": (_symlinked_library, "resolves to .*evil.so, outside the artifact"),
    "unlisted entry": (_unlisted_entry, "'other.pt2' .* is not listed in payload"),
    "not an object": (lambda m, c: m.clear() or m.update({"schema_version": 2}), "manifest has no created"),
    "schema as a string": (lambda m, c: m.update(schema_version="2"), "schema_version must be the integer 2, got '2'"),
    "older schema": (lambda m, c: m.update(schema_version=1), "older than this mlffc reads.*recompile"),
    "device tpu": (lambda m, c: m["target"].update(device="tpu"), "target.device must be cpu or cuda, got 'tpu'"),
    "threads 0": (lambda m, c: m["target"].update(threads=0), "target.threads must be >= 1"),
    "cutoff nan": (lambda m, c: m["model"].update(cutoff=float("nan")), "model.cutoff is nan"),
    "cutoff 0": (lambda m, c: m["model"].update(cutoff=0), "model.cutoff must be finite and > 0"),
    "species": (lambda m, c: m["model"].update(species=[1, 300]), "model.species must be"),
    "hash": (lambda m, c: m["payload"].update({k: "abc" for k in m["payload"]}), "must be a SHA-256 in hex"),
}


@pytest.mark.parametrize("case", list(SPOILS))
def test_loader_refuses_files_outside_unlisted_or_a_bad_manifest(artifact, tmp_path, case):
    spoil, message = SPOILS[case]
    copy = _spoiled(artifact, tmp_path, spoil)
    with pytest.raises(MlffcError, match=message):
        load(copy)


def test_manifest_that_is_not_an_object_and_a_truncated_payload(artifact, tmp_path):
    copy = tmp_path / "list"
    shutil.copytree(artifact, copy)
    (copy / MANIFEST).write_text("[1, 2]")
    with pytest.raises(MlffcError, match="is not a JSON object"):
        load(copy)
    cut = _spoiled(artifact, tmp_path / "cut", lambda m, c: None)
    entry = json.loads((cut / MANIFEST).read_text())["backend"]["entry"]
    data = (cut / entry).read_bytes()
    (cut / entry).write_bytes(data[: len(data) // 3])
    manifest = json.loads((cut / MANIFEST).read_text())
    manifest["payload"][entry] = sha256_file(cut / entry)  # the hash updated to match
    (cut / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(MlffcError, match=f"payload {entry} cannot be loaded"):
        load(cut)
    with pytest.raises(MlffcError, match="threads must be an integer >= 1"):
        load(artifact, threads=-1)


# --- crashes that kill the host process ----------------------------------------------------------

CELL_PROBE = textwrap.dedent("""
    import sys, numpy as np
    from ase import Atoms
    from mlffc.errors import MlffcError
    from mlffc.runtime import load
    model = load(sys.argv[1])
    cells = {"nan": [[10, 0, 0], [0, 10, 0], [0, 0, float("nan")]], "inf": np.diag([10, 10, np.inf]),
             "long": np.diag([10, 10, 1e6]), "longer": np.diag([10, 10, 3e6]), "tiny": np.eye(3) * 0.3,
             "flat": np.diag([50, 50, 0.01])}
    for name, cell in cells.items():
        for how in ("compute", "calculator"):
            atoms = Atoms("H", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=True) if name in ("tiny", "flat") else \\
                Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=cell, pbc=True)
            try:
                if how == "compute":
                    model.compute(atoms)
                else:
                    atoms.calc = model.calculator()
                    atoms.get_potential_energy()
                print(name, how, "NO ERROR")
            except MlffcError as error:
                print(name, how, "MlffcError", error)
""")


def test_bad_cells_are_refused_before_native_code_in_a_subprocess(artifact, tmp_path):
    (tmp_path / "probe.py").write_text(CELL_PROBE)
    result = subprocess.run([sys.executable, tmp_path / "probe.py", artifact], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)  # -8: SIGFPE
    lines = result.stdout.splitlines()
    assert len(lines) == 12 and all("MlffcError" in line for line in lines), result.stdout
    assert "finite" in lines[0] and "at most 10000 Å" in lines[4] and "atoms/Å³" in lines[8] and "thick" in lines[10]


def test_a_shifted_molecule_keeps_its_energy(artifact):
    model = load(artifact)
    ethanol = molecule("CH3CH2OH")
    far = ethanol.copy()
    far.positions += 1e7
    near, shifted = model.compute(ethanol), model.compute(far)
    assert abs(near["energy"][0] - shifted["energy"][0]) < 1e-4
    np.testing.assert_allclose(near["forces"][0], shifted["forces"][0], atol=1e-4)
    far.calc = model.calculator()
    assert abs(far.get_potential_energy() - near["energy"][0]) < 1e-4
    box = molecule("H2O")
    box.cell, box.pbc = np.eye(3) * 8.0, True
    moved = box.copy()
    moved.positions += 1e7 + box.cell[0] * 3  # far out of the cell, as a long MD leaves it
    assert abs(model.compute(box)["energy"][0] - model.compute(moved)["energy"][0]) < 1e-4


def test_structure_checks_name_cells():
    with pytest.raises(MlffcError, match="cell must be 3 x 3 finite"):
        check_structures([Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=np.diag([5, 5, np.nan]), pbc=True)])
    with pytest.raises(MlffcError, match="has no atoms|at least one structure"):
        check_structures([Atoms()])


def test_compute_of_nothing(artifact):
    with pytest.raises(MlffcError, match="at least one structure"):
        load(artifact).compute([])


# --- options refused before any work ------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("compile", "s.safetensors", "--out", "a", "--threads", 0), "threads must be an integer >= 1, got 0"),
    (("compile", "s.safetensors", "--out", "a", "--threads", -3), "threads must be an integer >= 1, got -3"),
    (("train", "--data", "d.h5", "--out", "r", "--epochs", 0), "--epochs must be 1 or more"),
    (("train", "--data", "d.h5", "--out", "r", "--epochs", -5), "--epochs must be 1 or more"),
    (("generate", "--out", "d.h5", "--md-interval", 0), "--md-interval must be 1 or more"),
    (("generate", "--out", "d.h5", "--spread-quantile", 1.5), "--spread-quantile must be in"),
    (("generate", "--out", "d.h5", "--limit", -1), "--limit must be 1 or more"),
    (("generate", "--out", ".", "--limit", 1), "is a directory: give an HDF5 file name"),
    (("check", "a", "--md", "--timestep", 0), "--timestep must be > 0"),
    (("check", "a", "--md", "--timestep", -1), "--timestep must be > 0"),
    (("check", "a", "--md", "--md-box", 0), "--md-box must be 1 or more"),
    (("check", "a", "--data", "d.h5", "--split", "bogus"), "--split must be one of train, val, test"),
])
def test_cli_refuses_bad_options_with_a_message(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    error = invoke(*args).exception
    assert isinstance(error, MlffcError) and message in str(error), error


def invoke(*args):
    """The command line in this process (what `mlffc` runs; main() turns an MlffcError into exit 2)."""
    from typer.testing import CliRunner

    from mlffc.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_shards_out_must_be_a_directory(tmp_path):
    (tmp_path / "f.h5").write_text("x")
    error = invoke("generate", "--out", tmp_path / "f.h5", "--shards", 2).exception
    assert isinstance(error, MlffcError) and "with --shards, --out names a directory" in str(error)


@pytest.mark.parametrize("yaml_text, message", [
    ("student: {cutoff: -4}\n", "student setting cutoff must be a finite number > 0"),
    ("student: {cutoff: 0}\n", "student setting cutoff must be a finite number > 0"),
    ("lr: -0.1\n", "lr must be a finite number >= 0, got -0.1"),
    ("lr: fast\n", "lr must be a finite number >= 0, got 'fast'"),
    ("threads: -2\n", "threads must be >= 0, got -2"),
    ("student: {widht: 3}\n", "student moment has no setting 'widht'"),
    ("- epochs: 3\n", "must hold a mapping of training settings"),
])
def test_training_config_is_checked_before_any_work(tmp_path, yaml_text, message):
    (tmp_path / "c.yaml").write_text(yaml_text)
    with pytest.raises(MlffcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_file(tmp_path / "c.yaml")


def test_dataset_whose_atom_counts_disagree_with_its_arrays(tmp_path, small_data):
    import h5py

    shutil.copyfile(small_data, tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "a") as handle:
        natoms = handle["natoms"][()]
        natoms[0] += 1
        del handle["natoms"]
        handle["natoms"] = natoms
    with pytest.raises(MlffcError, match="d.h5 is inconsistent: array 'numbers' has"):
        read_frames(tmp_path / "d.h5")


def test_checkpoints_are_written_0644_like_everything_else(tmp_path, trained_run):
    from mlffc.students import save_student

    save_student(trained_run[1], tmp_path / "s.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_flags_take_no_value_in_help_and_targets_keep_their_width():
    lines = [line for line in invoke("train", "--help").stdout.splitlines() if "--help" not in line]  # typer's own
    assert any("--restart" in line for line in lines) and not any("<bool>" in line for line in lines)
    assert max(len(line) for line in invoke("targets").stdout.splitlines()) > 100  # piped: not squashed to 80


def test_a_molecule_spread_over_megametres_is_refused_before_the_neighbour_search():
    """Found by the fuzz test: 4 atoms over 3e6 Å, no cell, killed Python (SIGFPE) in vesin."""
    from ase import Atoms

    from mlffc.structures import check_structures

    atoms = Atoms("N2H2", positions=[[0, 1e4, 4.5], [-5, 0, 0], [3e6, 15.6, -4], [0, 0, 0]])
    with pytest.raises(MlffcError, match="spread over 3e\\+06 Å"):
        check_structures([atoms])


def test_a_non_finite_gradient_is_named_as_the_gradient():
    from mlffc.trainers.distill import non_finite_loss

    sums = {"energy": torch.tensor(1.0), "forces": torch.tensor(2.0)}
    message = non_finite_loss("7 (g2/H2O)", {"epoch": 0, "step": 4}, sums, what="the gradient of the training loss")
    assert message.startswith("the gradient of the training loss is not finite at epoch 1, step 5")
    assert "all finite: the student diverged" in message and "7 (g2/H2O)" in message
