from passcheck import fresh, joint_of

from mlffc.passes import PassSettings
from mlffc.passes.eliminate_common_subexpressions import eliminate_common_subexpressions


def _keys(graph_module):
    return [(n.target, tuple(str(a) for a in n.args)) for n in graph_module.graph.nodes if n.op in ("call_function", "get_attr")]


def test_repeated_expressions_computed_once(moment, moment_energy, batches):
    joint = joint_of(fresh(moment_energy), moment)
    reference = [joint(*g.inputs()) for g in batches]
    before = len(joint.graph.nodes)
    after = eliminate_common_subexpressions(joint, PassSettings())
    assert len(after.graph.nodes) < before
    keys = _keys(after)
    assert len(keys) == len(set(keys))
    for graph, expected in zip(batches, reference):
        assert all((got - want).abs().max() == 0 for got, want in zip(after(*graph.inputs()), expected))
