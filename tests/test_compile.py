import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.md.verlet import VelocityVerlet
from ase import units

from mlffc.check import Limits, check_artifact
from mlffc.compiler import compile_student, plan, resolve_target
from mlffc.data.loader import GraphDataset
from mlffc.data.storage import read_dataset
from mlffc.errors import MlffcError
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.students import build_student, save_student
from mlffc.trainers.distill import predict

pytestmark = pytest.mark.slow


def test_compiled_matches_eager(artifact, trained_run):
    model = load(artifact)
    student = trained_run[1]
    structures = [molecule("CH3CONH2"), molecule("H2O"), molecule("C2H4"), molecule("HCN")]
    for atoms in structures:
        atoms.rattle(0.05, seed=3)
    graph = build_graph(structures, student.cutoff)
    compiled = model.run(graph)
    eager = student(*graph.inputs())
    np.testing.assert_allclose(compiled[0].numpy(), eager[0].detach().numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(compiled[1].numpy(), eager[1].detach().numpy(), rtol=0, atol=1e-4)


def test_manifest_describes_the_artifact(artifact, trained_run, small_data):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["target"]["name"] == "cpu" and manifest["backend"]["name"] == "aoti"
    assert manifest["built_on"]["torch"] == torch.__version__
    assert manifest["model"]["species"] == [1, 6, 7, 8]
    assert manifest["units"]["forces"] == "eV/Angstrom"
    assert manifest["accuracy"]["vs_eager"]["max_forces_error"] < 2e-3
    # the reported teacher error is the eager student's own on the test split (compiled ~ eager)
    test = read_dataset(small_data).split_named("test")
    eager = predict(trained_run[1], GraphDataset(test, trained_run[1].cutoff))
    eager_mae = float(np.abs(eager[1] - test.forces).mean())
    assert manifest["accuracy"]["vs_teacher"]["force_mae"] == pytest.approx(eager_mae, abs=1e-3)
    speed = manifest["speed"]
    assert speed["atoms"] == 300 and speed["speedup_vs_eager"] == pytest.approx(speed["eager_ms"] / speed["compiled_ms"])


def test_check_gates_at_its_limits(artifact, small_data):
    """Limits just above the measured errors pass; each one just below fails, naming itself."""
    measured = check_artifact(artifact, small_data, Limits())["vs_teacher"]
    above = Limits(force_mae=measured["force_mae"] * 1.01, energy_mae_per_atom=measured["energy_mae_per_atom"] * 1.01)
    report = check_artifact(artifact, small_data, above)
    assert report["passed"], report["failures"]
    assert report["vs_eager"]["forces"] < 2e-3
    for name in ("force_mae", "energy_mae_per_atom"):
        below = replace(above, **{name: measured[name] * 0.99})
        failures = check_artifact(artifact, small_data, below)["failures"]
        assert [f.split(" ")[0] for f in failures] == [name]


def test_check_fails_on_a_bad_artifact(tmp_path, trained_run, small_data):
    """An untrained student compiled to an artifact must fail the check against the teacher."""
    good = trained_run[1]
    torch.manual_seed(123)
    bad = build_student(good.name, **good.config())
    bad.atomic_reference.copy_(good.atomic_reference)
    save_student(bad, tmp_path / "bad.safetensors")
    compile_student(tmp_path / "bad.safetensors", resolve_target("cpu"), tmp_path / "bad-artifact", small_data)
    trained = check_artifact(tmp_path / "bad-artifact", small_data, Limits())
    assert not trained["passed"]
    assert any(f.startswith("force_mae") for f in trained["failures"])


def test_tampered_payload_is_refused(tmp_path, artifact):
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    with open(copy / "model.pt2", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(MlffcError, match="does not match its SHA-256"):
        load(copy)


def test_other_torch_release_is_refused(tmp_path, artifact):
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["built_on"]["torch"] = "2.99.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MlffcError, match="built with torch 2.99.0.*rebuild it here with `mlffc compile --target cpu`"):
        load(copy)


def test_gpu_target_without_gpu_is_refused(tmp_path, trained_run):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(MlffcError, match="needs its GPU .*sm_80.* --plan"):
        compile_student(trained_run[0] / "student.safetensors", resolve_target("a100"), tmp_path / "a", None)
    assert any("sm_80" in step for step in plan(resolve_target("a100")))


def test_runtime_refuses_unsupported_element(artifact):
    with pytest.raises(MlffcError, match="element Cl is not supported"):
        load(artifact).compute(molecule("CH3Cl"))


def test_ase_calculator_runs_md(artifact, trained_run):
    model = load(artifact)
    atoms = molecule("CH3OH")
    atoms.calc = model.calculator()
    graph = build_graph([atoms], model.cutoff)
    _, eager_forces, _ = trained_run[1](*graph.inputs())
    np.testing.assert_allclose(atoms.get_forces(), eager_forces.detach().numpy(), atol=1e-4)
    VelocityVerlet(atoms, 0.5 * units.fs).run(20)
    assert np.isfinite(atoms.get_potential_energy())


def test_batched_compute_equals_single(artifact):
    model = load(artifact)
    structures = [molecule("H2O"), molecule("C6H6"), molecule("NH3")]
    batch = model.compute(structures)
    for k, atoms in enumerate(structures):
        single = model.compute(atoms)
        assert batch["energy"][k] == pytest.approx(single["energy"][0], abs=1e-4)
        np.testing.assert_allclose(batch["forces"][k], single["forces"][0], atol=1e-5)
