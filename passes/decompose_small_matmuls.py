"""decompose_small_matmuls: batched matmuls with a tiny inner dimension -> multiply + sum.

Needs: the energy graph (before differentiation, so the traced backward is elementwise too) with
fake values on its nodes. After: every bmm(A [B, M, K], C [B, K, N]) with a static K <= 8
becomes sum(A[:, :, :, None] * C[:, None, :, :], dim=2). The moment student's invariants
(einsum over the 3 or 6 components of dipoles and quadrupoles, per atom) are such batched
matmuls; as extern bmm calls on thousands of 16x3 @ 3x16 problems they cost more than the loop
Inductor generates for the elementwise form, which it also fuses with the neighbours.
"""

from __future__ import annotations

from torch.fx import GraphModule

from mlffc.passes.core import EXACT, aten, finish, graph_pass, is_call, shape

MAX_INNER = 8


@graph_pass(budget=EXACT)
def decompose_small_matmuls(graph_module: GraphModule, settings) -> GraphModule:
    graph = graph_module.graph
    for node in list(graph.nodes):
        if not is_call(node, aten.bmm.default):
            continue
        a, c = node.args
        inner = (shape(a) or (None,) * 3)[2]
        if not isinstance(inner, int) or inner > MAX_INNER:
            continue
        with graph.inserting_before(node):
            product = graph.call_function(aten.mul.Tensor, (graph.call_function(aten.unsqueeze.default, (a, 3)),
                                                            graph.call_function(aten.unsqueeze.default, (c, 1))))
            decomposed = graph.call_function(aten.sum.dim_IntList, (product, [2]))
        node.replace_all_uses_with(decomposed)
        graph.erase_node(node)
    return finish(graph_module)
