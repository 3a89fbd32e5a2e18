from passcheck import fresh, joint_of

from mlffc.passes import PassSettings
from mlffc.passes.core import shape
from mlffc.passes.lower_broadcasts_to_matmuls import lower_broadcasts_to_matmuls


def _inner_broadcasts(graph_module):
    found = []
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and str(node.target) == "aten.mul.Tensor" and shape(node) and len(shape(node)) > 2:
            for operand in node.args[:2]:
                s = shape(operand)
                if s and len(s) == len(shape(node)) and s[0] == shape(node)[0] and s[1:] != shape(node)[1:]:
                    found.append(node)
    return found


def test_inner_broadcasts_become_matmuls(moment, moment_energy, batches):
    joint = joint_of(fresh(moment_energy), moment)
    reference = [joint(*g.inputs()) for g in batches]
    assert _inner_broadcasts(joint)
    after = lower_broadcasts_to_matmuls(joint, PassSettings())
    assert not _inner_broadcasts(after)
    for graph, expected in zip(batches, reference):
        for got, want in zip(after(*graph.inputs()), expected):
            assert (got - want).abs().max() < 1e-5
