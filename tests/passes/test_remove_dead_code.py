from passcheck import fresh, joint_of

from mlffc.passes import PassSettings
from mlffc.passes.remove_dead_code import remove_dead_code


def test_unused_nodes_and_constants_go(moment, moment_energy, batches):
    joint = joint_of(fresh(moment_energy), moment)
    joint.register_buffer("unused_constant", joint.energy_scale.clone())
    reference = [joint(*g.inputs()) for g in batches]
    before = len(joint.graph.nodes)
    after = remove_dead_code(joint, PassSettings())
    assert len(after.graph.nodes) < before
    assert not hasattr(after, "unused_constant")
    assert all(len(n.users) > 0 for n in after.graph.nodes if n.op not in ("output", "placeholder"))
    for graph, expected in zip(batches, reference):
        assert all((got - want).abs().max() == 0 for got, want in zip(after(*graph.inputs()), expected))
