"""`mlffc compile --backend auto` (compiler.candidate_targets, compile_student with a list of
targets): every backend of the cpu target lowered in its own temporary directory, the fastest
that passes acceptance kept, every one recorded in the manifest's backend_selection."""

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


def test_auto_keeps_the_fastest_accepted_backend(tmp_path, trained_run, small_data):
    out = tmp_path / "auto"
    manifest = compile_student(_student(trained_run), candidate_targets("cpu"), out, small_data)
    trials = {t.backend: t for t in manifest.backend_selection}
    assert [t.backend for t in manifest.backend_selection] == ["aoti", "onnxruntime", "tvm"]
    accepted = {name: t.ms for name, t in trials.items() if t.accepted}
    assert accepted, trials
    winner = min(accepted, key=accepted.get)
    assert manifest.backend.name == winner == manifest.target.backend and trials[winner].status == "chosen"
    assert manifest.speed.compiled_ms == trials[winner].ms
    for name, trial in trials.items():
        if name != winner:
            assert trial.status in ("slower", "failed acceptance", "lowering failed") and trial.reason
            if trial.status == "slower":
                assert trial.reason.startswith(f"slower: {trial.ms:.3f} ms vs {trials[winner].ms:.3f} ms")
    assert Manifest.read(out) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]  # the losers' directories are gone
    model, student = load(out), trained_run[1]
    graph = build_graph([molecule("CH3CONH2"), molecule("H2O")], student.cutoff)
    compiled, eager = model.run(graph), student(*graph.inputs())
    np.testing.assert_allclose(compiled[1].numpy(), eager[1].detach().numpy(), rtol=0, atol=1e-3)


def test_a_failing_backend_is_recorded_and_another_wins(tmp_path, trained_run, monkeypatch):
    acceptance = compiler.acceptance

    def onnxruntime_disagrees(compiled, calibration, eager, tolerance):
        if compiled.manifest.backend.name == "onnxruntime":
            raise MlffcError(f"compiled model disagrees with the eager student (max |dF| 0.5 > {tolerance['forces']})")
        return acceptance(compiled, calibration, eager, tolerance)

    monkeypatch.setattr(compiler, "acceptance", onnxruntime_disagrees)
    monkeypatch.setattr(BACKENDS["tvm"], "requires", (("not-a-package", "not_a_package_mlffc"),))
    out = tmp_path / "auto"
    manifest = compile_student(_student(trained_run), candidate_targets("cpu"), out)
    trials = {t.backend: t for t in manifest.backend_selection}
    assert manifest.backend.name == "aoti" and trials["aoti"].status == "chosen" and trials["aoti"].ms > 0
    assert trials["onnxruntime"].status == "failed acceptance" and not trials["onnxruntime"].accepted
    assert trials["onnxruntime"].reason.startswith("failed acceptance: MlffcError: compiled model disagrees") and trials["onnxruntime"].ms is None
    assert trials["tvm"].status == "not installed" and trials["tvm"].reason.startswith("not installed: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]
    assert load(out).manifest.backend.name == "aoti"


def test_no_backend_passing_is_an_error_and_writes_nothing(tmp_path, trained_run, monkeypatch):
    for name in ("aoti", "onnxruntime", "tvm"):
        def fail(exported, target, out_dir, name=name):
            (out_dir / "half-written").write_text(name)
            raise RuntimeError(f"{name} cannot lower this\nsecond line")
        monkeypatch.setattr(BACKENDS[name], "lower", fail)
    out = tmp_path / "auto"
    with pytest.raises(MlffcError, match="no backend passed; nothing written. aoti: lowering failed: RuntimeError: aoti cannot lower "
                                         "this; onnxruntime: lowering failed: .*; tvm: lowering failed: RuntimeError: tvm cannot"):
        compile_student(_student(trained_run), candidate_targets("cpu"), out)
    assert list(tmp_path.iterdir()) == []  # neither --out nor a temporary directory


def test_plan_names_the_backends_tried(monkeypatch):
    monkeypatch.setattr(BACKENDS["tvm"], "requires", (("not-a-package", "not_a_package_mlffc"),))
    steps = plan_auto(candidate_targets("cpu"))
    assert steps[0].endswith("aoti, onnxruntime (not installed here, recorded as such: tvm)")
    assert steps[1].startswith("with aoti: passes fuse_edge_moments") and "decompose_silu_backward" in steps[2]
    assert [t.backend for t in candidate_targets("h100")] == ["aoti", "onnxruntime", "tvm", "tensorrt"]
