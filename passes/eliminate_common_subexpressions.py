"""eliminate_common_subexpressions: compute each distinct expression once.

Needs: a functional graph module (either stage; run on the joint graph, where the traced backward
repeats the forward's selects, views and weight transposes). After: the same outputs; no two
nodes with the same target and the same inputs, except mutating and random ops, which are kept.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node
from torch.fx.node import map_arg

from mlffc.passes.core import EXACT, graph_pass


@graph_pass(budget=EXACT, stages=("energy", "joint"))
def eliminate_common_subexpressions(graph_module: GraphModule, settings) -> GraphModule:
    seen: dict[tuple, Node] = {}
    replaced: dict[Node, Node] = {}
    for node in list(graph_module.graph.nodes):
        if node.op not in ("call_function", "get_attr") or not _pure(node):
            continue
        args = map_arg(node.args, lambda n: replaced.get(n, n))
        kwargs = map_arg(node.kwargs, lambda n: replaced.get(n, n))
        key = (node.op, node.target, _hashable(args), _hashable(kwargs))
        if key in seen:
            node.replace_all_uses_with(seen[key])
            replaced[node] = seen[key]
            graph_module.graph.erase_node(node)
        else:
            node.args, node.kwargs = args, kwargs
            seen[key] = node
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _pure(node: Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    if schema is not None and schema.is_mutable:
        return False
    return torch.Tag.nondeterministic_seeded not in getattr(node.target, "tags", ())


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_hashable(v) for v in value))
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value))
    return value
