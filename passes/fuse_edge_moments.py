"""fuse_edge_moments: per-edge moments summed into atoms -> one mlffc::edge_moments per sum.

Needs: the energy graph (before differentiation) with fake values on its nodes (make_fx
symbolic trace or a previous pass); runs before fuse_edge_scatter, which would otherwise take the
same sums apart. After: every `index_add(zeros [N, W], 0, centre, cat(blocks, 1))` over the
centre row of `edge_index` (sorted by centre, the graph's convention: toolchain/graph.py) whose
blocks all have C channels -- plain [E, C] sums and outer products w_l [E, C] (x) y_l [E, K_l]
flattened to [E, C*K_l], at least one of them -- becomes
edge_moments(weights [E, L*C], basis [E, sum K_l], centre, N, orders), weights being the
blocks' channel factors (their common parent when they are consecutive column slices of one
tensor, else concatenated) and basis the concatenated y_l. The autograd backward, traced later by
`differentiate`, is the op mlffc::edge_moments_backward. One pass over receivers, forward and
backward: no [E, C*K] tensor, no scatter; the op refuses edges not sorted by centre.

This is the moment student's "edges -> moments" (L = 0 sums, dipole and quadrupole moments);
sums whose blocks differ in channels (the Behler student's) are left to fuse_edge_scatter.
"""

from __future__ import annotations

import math

import torch
from torch.fx import GraphModule, Node

from mlffc import ops
from mlffc.passes.core import EXACT, aten, dtype, edge_sum, finish, graph_pass, is_call, shape

_FULL = 2**63 - 1  # a slice's "to the end"


@graph_pass(budget=EXACT, custom_ops=True, before=("fuse_edge_scatter",))
def fuse_edge_moments(graph_module: GraphModule, settings) -> GraphModule:
    ops.load()
    graph = graph_module.graph
    bases: dict[tuple[Node, ...], Node] = {}  # one concatenated basis per set of angular factors
    for node in list(graph.nodes):
        found = edge_sum(node)
        if found is None or not _is_centre(found[1]) or dtype(found[0]) != dtype(node.args[3]):
            continue
        _, centre, blocks, outers, num_nodes = found
        factors = [(block, shape(block)[1]) if outer is None else outer[0] for block, outer in zip(blocks, outers)]
        channels = {c for _, c in factors}
        if len(channels) != 1:
            continue
        (c,) = channels
        orders = [0 if outer is None else outer[1][1] for outer in outers]
        with graph.inserting_before(node):
            edges = graph.call_function(aten.sym_size.int, (centre, 0))
            weights = _common_parent([f for f, _ in factors], c)
            if weights is None:
                weights = graph.call_function(aten.cat.default, (
                    [graph.call_function(aten.reshape.default, (f, [edges, c])) for f, _ in factors], 1))
            angular = tuple(outer[1][0] for outer in outers if outer is not None)
            if angular not in bases:
                parts = [graph.call_function(aten.reshape.default, (y, [edges, k])) for y, k in (o[1] for o in outers if o)]
                bases[angular] = parts[0] if len(parts) == 1 else graph.call_function(aten.cat.default, (parts, 1))
            fused = graph.call_function(torch.ops.mlffc.edge_moments.default, (weights, bases[angular], centre, num_nodes, orders))
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
    return finish(graph_module)


def _is_centre(index) -> bool:
    """index is row 0 of the edge_index input (the centres, sorted by the graph's convention)."""
    return (is_call(index, aten.select.int) and index.args[1:] == (0, 0)
            and isinstance(index.args[0], Node) and index.args[0].op == "placeholder")


def _columns(factor):
    """(parent, start, stop) when factor is parent[:, start:stop] (with trailing unit dims), else None."""
    node = factor
    while is_call(node, aten.unsqueeze.default) and (shape(node) or (0,))[-1] == 1:
        node = node.args[0]
    if not is_call(node, aten.slice.Tensor) or len(node.args) < 2 or node.args[1] != 1:
        return None
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    stop = node.args[3] if len(node.args) > 3 and node.args[3] is not None else _FULL
    parent = node.args[0]
    while is_call(parent, aten.slice.Tensor) and tuple(parent.args[1:]) in ((0, 0, _FULL), (0, None, None)):
        parent = parent.args[0]  # whole-dimension slice along edges
    return parent, start, stop


def _common_parent(factors, channels: int):
    """P when the factors are P[:, 0:C], P[:, C:2C], ... covering all of P's columns, else None."""
    columns = [_columns(f) for f in factors]
    if any(c is None for c in columns) or len({p for p, _, _ in columns}) != 1:
        return None
    parent = columns[0][0]
    parent_shape = shape(parent)
    if parent_shape is None or len(parent_shape) != 2 or parent_shape[1] != channels * len(factors):
        return None
    for k, (_, start, stop) in enumerate(columns):
        if start != k * channels or min(stop, parent_shape[1]) != (k + 1) * channels:
            return None
    return parent if all(math.prod(shape(f)[1:]) == channels for f in factors) else None
