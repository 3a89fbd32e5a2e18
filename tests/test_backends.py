"""Each backend's artifact agrees with the eager student within its tolerance, passes the check
against the teacher, records what it was built with, and refuses another runtime version."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from ase.build import molecule

from mlffc.check import Limits, check_artifact
from mlffc.compiler import compile_student, pass_settings, resolve_target
from mlffc.errors import MlffcError
from mlffc.graph import build_graph
from mlffc.passes import PASSES
from mlffc.passes.core import budget_of
from mlffc.runtime import load
from mlffc.targets import TARGETS
from mlffc.targets.backends import get_backend

ARTIFACTS = {"aoti": "artifact", "onnxruntime": "onnx_artifact", "tvm": "tvm_artifact"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(ARTIFACTS))
def test_artifact_agrees_with_eager_and_passes_check(backend, request, trained_run, small_data):
    artifact = request.getfixturevalue(ARTIFACTS[backend])
    model, student = load(artifact), trained_run[1]
    tolerance = model.manifest.accuracy.vs_eager.tolerance
    structures = [molecule("CH3CONH2"), molecule("C2H4"), molecule("H2O")]
    for atoms in structures:
        atoms.rattle(0.05, seed=3)
    graph = build_graph(structures, student.cutoff)
    compiled, eager = model.run(graph), student(*graph.inputs())
    natoms = np.array([len(a) for a in structures])
    assert np.abs((compiled[0].numpy() - eager[0].detach().numpy()) / natoms).max() < tolerance.energy_per_atom
    assert np.abs(compiled[1].numpy() - eager[1].detach().numpy()).max() < tolerance.forces
    report = check_artifact(artifact, small_data, limits_at_reported(artifact))
    assert report["passed"], report["failures"]


def limits_at_reported(artifact) -> Limits:
    """Limits 1% above the teacher errors compile reported on the test split: check measures
    the same frames with the same model, so it passes exactly when it agrees with compile."""
    reported = json.loads((artifact / "manifest.json").read_text())["accuracy"]["vs_teacher"]
    return Limits(force_mae=reported["force_mae"] * 1.01, energy_mae_per_atom=reported["energy_mae_per_atom"] * 1.01)


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(ARTIFACTS))
def test_manifest_describes_backend_and_passes(backend, request):
    artifact = request.getfixturevalue(ARTIFACTS[backend])
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["backend"]["name"] == backend
    assert manifest["backend"]["versions"]["torch"] == torch.__version__
    assert manifest["device"]["arch"] == torch.backends.cpu.get_cpu_capability()
    assert set(manifest["payload"]) == {manifest["backend"]["entry"], *manifest["backend"]["libraries"]}
    names = [p["name"] for p in manifest["passes"]]
    if backend == "aoti":
        assert {"fuse_edge_moments", "fuse_edge_scatter"} <= set(names) and manifest["backend"]["libraries"] == ["mlffc_ops.so"]
    else:
        assert not {"fuse_edge_moments", "fuse_edge_scatter"} & set(names) and "decompose_silu_backward" in names
        assert manifest["backend"]["versions"][get_backend(backend).package]
    # every default pass fits its budget on a trained student (a rejected one would be reported),
    # measured (finite numbers) against the budget the pass declares for the target's settings
    settings = pass_settings(resolve_target(manifest["target"]["name"], backend))
    for record in manifest["passes"]:
        assert record["applied"], record
        assert all(np.isfinite(v) for v in record["error"].values() if v is not None)
        assert record["budget"] == vars(budget_of(PASSES[record["name"]], settings))


@pytest.mark.slow
@pytest.mark.parametrize("backend, package", [("onnxruntime", "onnxruntime"), ("tvm", "apache-tvm")])
def test_other_runtime_version_is_refused(backend, package, request, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(request.getfixturevalue(ARTIFACTS[backend]), copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["backend"]["versions"][package] = "0.0.1"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MlffcError, match=f"built with {package} 0.0.1.*--backend {backend}"):
        load(copy)


def test_missing_backend_package_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tvm" else real(name, *a))
    with pytest.raises(MlffcError, match="backend 'tvm' cannot run here: .*apache-tvm.*pip install apache-tvm"):
        get_backend("tvm")


def test_backend_choice_adjusts_passes():
    onnx = resolve_target("cpu", "onnxruntime")
    assert not {"fuse_edge_moments", "fuse_edge_scatter"} & set(onnx.passes) and "decompose_silu_backward" in onnx.passes
    assert {"fuse_edge_moments", "fuse_edge_scatter"} <= set(resolve_target("cpu").passes)
    with pytest.raises(MlffcError, match="fuse_edge_scatter make graphs that call the mlffc op library"):
        resolve_target("cpu", "tvm", passes=["fuse_edge_scatter"])
    with pytest.raises(MlffcError, match="supports backends"):
        resolve_target("cpu", "tensorrt")


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch-tensorrt is installed")
def test_tensorrt_without_its_package_is_a_clear_error():
    with pytest.raises(MlffcError, match="torch-tensorrt"):
        get_backend("tensorrt")


def _gpu_target():
    major, minor = torch.cuda.get_device_capability()
    arch = f"sm_{major}{minor}"
    for target in TARGETS.values():
        if target.arch == arch:
            return target.name
    pytest.skip(f"no registered target for this GPU ({arch})")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aoti", "onnxruntime", "tvm", "tensorrt"])
def test_gpu_target_per_backend(backend, tmp_path, trained_run, small_data):
    if backend == "tensorrt" and importlib.util.find_spec("torch_tensorrt") is None:
        pytest.skip("torch-tensorrt is not installed (its libraries come from NVIDIA's index)")
    target = resolve_target(_gpu_target(), backend)
    compile_student(trained_run[0] / "student.safetensors", target, tmp_path / "a", small_data)
    report = check_artifact(tmp_path / "a", small_data, limits_at_reported(tmp_path / "a"))
    assert report["passed"], report["failures"]
