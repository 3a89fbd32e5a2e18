"""fold_constants: evaluate what depends on constants only, once, at compile time.

Needs: the energy graph (before differentiation), after fuse_radial_linear and fuse_linear_activation
(they match weights as `t(W)`, which folding turns into stored transposes). After: no node whose inputs are all constants
(weight transposes, scaled buffers, ...): each is replaced by its value; and species lookups
through constant tables are composed, `A[B[x]] -> (A[B])[x]` for constant A and integer B (e.g.
one-hot(species index(Z)) and reference-energy(species index(Z)) become one lookup by atomic
number Z). Results change only by rounding (a stored transpose changes a matmul's summation order).
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node
from torch.fx.node import map_arg

from mlffc.passes.core import EXACT, add_constant, aten, constant, finish, graph_pass, is_call

_MAX_GROWTH = 4  # never fold into a constant much larger than its inputs (expand, repeat, outer products)


@graph_pass(budget=EXACT, after=("fuse_radial_linear", "fuse_linear_activation"))
def fold_constants(graph_module: GraphModule, settings) -> GraphModule:
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or not _foldable(graph_module, node):
            continue
        inputs = [n for n in node.all_input_nodes]
        value = node.target(*map_arg(node.args, lambda n: constant(graph_module, n)), **map_arg(node.kwargs, lambda n: constant(graph_module, n)))
        if not isinstance(value, torch.Tensor) or value.numel() > _MAX_GROWTH * sum(constant(graph_module, n).numel() for n in inputs):
            continue
        _replace(graph_module, node, value, inputs[0].target)
    for node in list(graph.nodes):
        if not is_call(node, aten.index.Tensor) or len(node.args[1]) != 1:
            continue
        table, inner = constant(graph_module, node.args[0]), node.args[1][0]
        if table is None or not is_call(inner, aten.index.Tensor) or len(inner.args[1]) != 1:
            continue
        lookup = constant(graph_module, inner.args[0])
        if lookup is None or lookup.dim() != 1 or lookup.dtype not in (torch.int64, torch.int32):
            continue
        composed = add_constant(graph_module, f"{node.args[0].target}_by_{inner.args[0].target}", table[lookup])
        with graph.inserting_before(node):
            node.args = (graph.get_attr(composed), [inner.args[1][0]])
    return finish(graph_module)


def _foldable(graph_module: GraphModule, node: Node) -> bool:
    inputs = node.all_input_nodes
    if not inputs or any(constant(graph_module, n) is None for n in inputs):
        return False
    schema = getattr(node.target, "_schema", None)
    if schema is not None and schema.is_mutable:
        return False
    return torch.Tag.nondeterministic_seeded not in getattr(node.target, "tags", ())


def _replace(graph_module: GraphModule, node: Node, value: torch.Tensor, hint: str) -> None:
    with graph_module.graph.inserting_before(node):
        folded = graph_module.graph.get_attr(add_constant(graph_module, f"{hint}_folded", value))
    node.replace_all_uses_with(folded)
    graph_module.graph.erase_node(node)
