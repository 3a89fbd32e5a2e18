from passcheck import fresh, joint_of, targets

from mlffc.passes import PassSettings
from mlffc.passes.decompose_silu_backward import decompose_silu_backward


def test_silu_backward_becomes_elementwise(moment, moment_energy, batches):
    joint = joint_of(fresh(moment_energy), moment)
    assert "aten.silu_backward.default" in targets(joint)
    reference = [joint(*g.inputs()) for g in batches]
    after = decompose_silu_backward(joint, PassSettings())
    assert "aten.silu_backward.default" not in targets(after)
    for graph, expected in zip(batches, reference):
        for got, want in zip(after(*graph.inputs()), expected):
            assert (got - want).abs().max() < 1e-5
