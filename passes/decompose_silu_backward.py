"""decompose_silu_backward: the traced SiLU backward as elementwise ops.

Needs: the joint graph (after differentiation; fake values on its inputs), where autograd recorded
`silu_backward`. After:
every silu_backward(g, x) is g * s * (1 + x * (1 - s)) with s = sigmoid(x). ONNX has no
translation of silu_backward and TVM's torch frontend no converter, so the backends that lower
through them require this pass; AOTInductor does not need it.
"""

from __future__ import annotations

from torch.fx import GraphModule

from mlffc.passes.core import EXACT, aten, finish, graph_pass, is_call


@graph_pass(budget=EXACT, stages=("joint",))
def decompose_silu_backward(graph_module: GraphModule, settings) -> GraphModule:
    graph = graph_module.graph
    for node in list(graph.nodes):
        if not is_call(node, aten.silu_backward.default):
            continue
        grad, x = node.args
        with graph.inserting_before(node):
            s = graph.call_function(aten.sigmoid.default, (x,))
            one_minus_s = graph.call_function(aten.rsub.Scalar, (s, 1))
            slope = graph.call_function(aten.add.Tensor, (graph.call_function(aten.mul.Tensor, (x, one_minus_s)), 1))
            decomposed = graph.call_function(aten.mul.Tensor, (graph.call_function(aten.mul.Tensor, (grad, s)), slope))
        node.replace_all_uses_with(decomposed)
        graph.erase_node(node)
    return finish(graph_module)
