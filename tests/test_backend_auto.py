"""`mlffc compile --backend auto` (compiler.candidate_targets, compile_student with a list of
targets): every backend of the cpu target lowered in its own temporary directory, the fastest
that passes acceptance kept, every one recorded in the manifest's backend_selection.

One real compile with all three cpu backends serves the tests that read its result (each
lowering takes a minute on 2 cores); in it tvm is made to fail acceptance, so the one run shows
a chosen, a slower or failed, and a failed-acceptance backend."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from mlffc import compiler
from mlffc.compiler import candidate_targets, compile_student, plan_auto
from mlffc.errors import MlffcError
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.runtime.manifest import Manifest
from mlffc.targets.backends import BACKENDS

pytestmark = pytest.mark.slow


def _student(trained_run):
    return trained_run[0] / "student.safetensors"


@pytest.fixture(scope="module")
def auto_compile(tmp_path_factory, trained_run, small_data):
    """(parent directory, --out, manifest) of one auto compile in which tvm fails acceptance."""
    acceptance = compiler.acceptance

    def tvm_disagrees(compiled, calibration, eager, tolerance):
        if compiled.manifest.backend.name == "tvm":
            raise MlffcError(f"compiled model disagrees with the eager student (max |dF| 0.5 > {tolerance['forces']})")
        return acceptance(compiled, calibration, eager, tolerance)

    parent = tmp_path_factory.mktemp("auto")
    out = parent / "auto"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiler, "acceptance", tvm_disagrees)
        manifest = compile_student(_student(trained_run), candidate_targets("cpu"), out, small_data)
    return parent, out, manifest


def test_auto_keeps_the_fastest_accepted_backend(auto_compile):
    _, out, manifest = auto_compile
    trials = {t.backend: t for t in manifest.backend_selection}
    assert [t.backend for t in manifest.backend_selection] == ["aoti", "onnxruntime", "tvm"]
    accepted = {name: t.ms for name, t in trials.items() if t.accepted}
    assert set(accepted) == {"aoti", "onnxruntime"}, trials
    winner = min(accepted, key=accepted.get)
    assert manifest.backend.name == winner == manifest.target.backend and trials[winner].status == "chosen"
    assert manifest.speed.compiled_ms == trials[winner].ms
    loser = ({"aoti", "onnxruntime"} - {winner}).pop()
    assert trials[loser].status == "slower"
    assert trials[loser].reason.startswith(f"slower: {trials[loser].ms:.3f} ms vs {trials[winner].ms:.3f} ms")
    assert Manifest.read(out) == manifest


def test_a_backend_failing_acceptance_is_recorded(auto_compile):
    trial = {t.backend: t for t in auto_compile[2].backend_selection}["tvm"]
    assert trial.status == "failed acceptance" and not trial.accepted and trial.ms is None
    assert trial.reason.startswith("failed acceptance: MlffcError: compiled model disagrees")


def test_the_chosen_artifact_alone_is_left_and_runs(auto_compile, trained_run):
    parent, out, manifest = auto_compile
    assert sorted(p.name for p in parent.iterdir()) == ["auto"]  # the losers' directories are gone
    model, student = load(out), trained_run[1]
    assert model.manifest.backend.name == manifest.backend.name
    graph = build_graph([molecule("CH3CONH2"), molecule("H2O")], student.cutoff)
    compiled, eager = model.run(graph), student(*graph.inputs())
    np.testing.assert_allclose(compiled[1].numpy(), eager[1].detach().numpy(), rtol=0, atol=1e-3)


def test_no_backend_passing_is_an_error_and_writes_nothing(tmp_path, trained_run, monkeypatch):
    for name in ("aoti", "onnxruntime"):
        def fail(exported, target, out_dir, name=name):
            (out_dir / "half-written").write_text(name)
            raise RuntimeError(f"{name} cannot lower this\nsecond line")
        monkeypatch.setattr(BACKENDS[name], "lower", fail)
    monkeypatch.setattr(BACKENDS["tvm"], "requires", (("not-a-package", "not_a_package_mlffc"),))
    out = tmp_path / "auto"
    with pytest.raises(MlffcError, match="no backend passed; nothing written. aoti: lowering failed: RuntimeError: aoti cannot lower "
                                         "this; onnxruntime: lowering failed: .*; tvm: not installed: "):
        compile_student(_student(trained_run), candidate_targets("cpu"), out)
    assert list(tmp_path.iterdir()) == []  # neither --out nor a temporary directory


def test_plan_names_the_backends_tried(monkeypatch):
    monkeypatch.setattr(BACKENDS["tvm"], "requires", (("not-a-package", "not_a_package_mlffc"),))
    steps = plan_auto(candidate_targets("cpu"))
    assert steps[0].endswith("aoti, onnxruntime (not installed here, recorded as such: tvm)")
    assert steps[1].startswith("with aoti: passes fuse_edge_moments") and "decompose_silu_backward" in steps[2]
    assert [t.backend for t in candidate_targets("h100")] == ["aoti", "onnxruntime", "tvm", "tensorrt"]
