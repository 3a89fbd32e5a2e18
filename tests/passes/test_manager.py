"""The pass manager: canonical order, checked passes, budgets that reject, records that report."""

import pytest

from passcheck import targets

from mlffc.capture import example_graph
from mlffc.errors import MlffcError
from mlffc.compiler import optimize
from mlffc.passes import ENERGY_PASSES, JOINT_PASSES, PASSES, Budget, Calibration, PassSettings
from mlffc.passes.manager import ordering_violations


@pytest.fixture(scope="module")
def calibration(moment, batches):
    return Calibration(batches[:2], labels=[None, None], timing=batches[2])


def test_every_pass_is_listed_once_with_a_budget_and_a_contract():
    names = [p.__name__ for p in (*ENERGY_PASSES, *JOINT_PASSES)]
    assert len(names) == len(set(names)) == len(PASSES)
    for graph_pass in PASSES.values():
        assert "_" in graph_pass.__name__ and hasattr(graph_pass, "budget")
        doc = __import__(graph_pass.__module__, fromlist=["_"]).__doc__
        assert "Needs:" in doc and "After:" in doc, graph_pass.__name__


def test_the_managers_order_satisfies_every_declared_constraint():
    assert ordering_violations() == []
    for graph_pass in PASSES.values():
        doc = __import__(graph_pass.__module__, fromlist=["_"]).__doc__
        for other in (*graph_pass.after, *graph_pass.before):
            assert other in PASSES and other in doc, (graph_pass.__name__, other)  # the prose names each constraint


def test_an_order_breaking_a_constraint_is_reported():
    convert, quantize = PASSES["convert_precision"], PASSES["quantize_weights"]
    swapped = {"energy": [quantize, convert], "joint": [PASSES["remove_dead_code"], PASSES["decompose_silu_backward"]]}
    assert ordering_violations(swapped) == ["quantize_weights must run after convert_precision",
                                            "convert_precision must run before quantize_weights"]
    assert ordering_violations({"joint": [PASSES["fold_constants"]]}) == [
        "fold_constants is listed in the joint stage; it runs in energy"]


def test_passes_run_in_the_managers_order_and_are_recorded(moment, calibration):
    names = ["remove_dead_code", "fuse_edge_scatter", "eliminate_common_subexpressions", "fold_constants"]
    joint, records = optimize(moment, example_graph(moment), names, PassSettings(), calibration)
    assert [r["name"] for r in records] == ["fuse_edge_scatter", "fold_constants", "eliminate_common_subexpressions", "remove_dead_code"]
    assert all(r["applied"] for r in records)
    for record in records:
        assert record["error"]["forces"] < record["budget"]["forces"]
        assert record["graph_ms"]["after"] > 0 and record["vs_student"]["forces"] < 1e-3
    assert "mlffc.scatter_outer_backward.default" in targets(joint)


def test_a_pass_over_its_budget_is_rejected_and_reported(moment, calibration):
    tight = Budget(energy_per_atom=1e-6, forces=1e-6, teacher_force_mae=1e-6)
    settings = PassSettings(precision="bf16", budgets={"convert_precision": tight})
    joint, records = optimize(moment, example_graph(moment), ["convert_precision", "remove_dead_code"], settings, calibration)
    rejected = records[0]
    assert rejected["name"] == "convert_precision" and not rejected["applied"]
    assert "over budget" in rejected["rejected"] and "forces" in rejected["rejected"]
    assert records[1]["applied"]
    assert not any("bfloat16" in str(n.meta.get("val", "")) for n in joint.graph.nodes)  # the graph before it went on
    # with its own budget, bf16 is accepted
    _, records = optimize(moment, example_graph(moment), ["convert_precision"], PassSettings(precision="bf16"), calibration)
    assert records[0]["applied"]


def test_unknown_pass_is_a_clear_error(moment):
    with pytest.raises(MlffcError, match="unknown pass 'fuse_everything'"):
        optimize(moment, example_graph(moment), ["fuse_everything"], PassSettings())
