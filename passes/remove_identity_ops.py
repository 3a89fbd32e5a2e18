"""remove_identity_ops: drop ops that return their input unchanged.

Needs: the energy graph (before differentiation) with fake values on its nodes. After: no slice
covering a whole dimension (start 0, end past the size, step 1), no view/reshape/expand to the
input's own shape, no clone, alias or detach, no dtype conversion to the input's dtype. Indexing
as `x[:, a:b]` traces a full slice of the symbolic leading dimension first; differentiated, each
becomes a `slice_backward` (a scatter into zeros) that TVM cannot legalise for a symbolic size.
"""

from __future__ import annotations

import sys

from torch.fx import GraphModule

from mlffc.passes.core import EXACT, aten, dtype, finish, graph_pass, is_call, shape

_SAME_SHAPE = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default)
_ALIASES = (aten.clone.default, aten.alias.default, aten.detach.default)


@graph_pass(budget=EXACT)
def remove_identity_ops(graph_module: GraphModule, settings) -> GraphModule:
    for node in list(graph_module.graph.nodes):
        if _is_identity(node):
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
    return finish(graph_module)


def _is_identity(node) -> bool:
    if is_call(node, aten.slice.Tensor):
        args = [*node.args, *([None] * 5)][:5]
        _, dim, start, end, step = args
        return (start in (None, 0)) and (end is None or (isinstance(end, int) and end >= sys.maxsize)) and step in (None, 1)
    if is_call(node, *_SAME_SHAPE):
        return shape(node) is not None and shape(node) == shape(node.args[0])
    if is_call(node, *_ALIASES):
        return not node.kwargs.get("memory_format")
    if is_call(node, aten._to_copy.default):
        return set(node.kwargs) <= {"dtype"} and dtype(node) == dtype(node.args[0])
    return False
