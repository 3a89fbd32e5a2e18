"""fuse_edge_scatter: per-edge outer products summed into atoms -> mlffc::scatter_outer.

Needs: the energy graph (before differentiation) with fake values on its nodes (make_fx
symbolic trace or a previous pass). After: every `index_add(zeros [N, W], 0, index, src)` whose
src is an outer product a [E, C] (x) b [E, K] flattened to [E, C*K] (or a concatenation of such
blocks and plain [E, M] blocks) becomes scatter_outer(a, b, index, N) per outer block and a plain
index_add per other block, concatenated; the autograd backward, traced later by `differentiate`,
is the op mlffc::scatter_outer_backward. The [E, C*K] per-edge tensor is never materialised,
in the forward or the backward (where Inductor otherwise gathers it back per edge).

This is the moment student's "edges -> moments" (radial functions x dipole/quadrupole bases) and
the Behler student's radial and angular sums; PaiNN's vector messages are not outer products and
are left alone.
"""

from __future__ import annotations

import math

import torch
from torch.fx import GraphModule, Node

from mlffc import ops
from mlffc.passes.core import EXACT, aten, finish, graph_pass, is_call, shape

_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_ZEROS = (aten.zeros.default, aten.new_zeros.default)


@graph_pass(budget=EXACT, custom_ops=True)
def fuse_edge_scatter(graph_module: GraphModule, settings) -> GraphModule:
    ops.load()
    graph = graph_module.graph
    for node in list(graph.nodes):
        if not is_call(node, aten.index_add.default) or len(node.args) != 4 or node.args[1] != 0 or node.kwargs:
            continue
        target, _, index, source = node.args
        if not _is_zeros_2d(target) or shape(source) is None:
            continue
        blocks = list(source.args[0]) if is_call(source, aten.cat.default) and _cat_dim(source) == 1 else [source]
        outers = [_outer_factors(block) for block in blocks]
        if not any(outers):
            continue
        num_nodes = target.args[0][0] if target.target == aten.zeros.default else target.args[1][0]
        with graph.inserting_before(node):
            edges = graph.call_function(aten.sym_size.int, (index, 0))
            parts = []
            for block, outer in zip(blocks, outers):
                if outer is None:
                    zeros = graph.call_function(aten.zeros.default, ([num_nodes, shape(block)[1]],), dict(target.kwargs))
                    parts.append(graph.call_function(aten.index_add.default, (zeros, 0, index, block)))
                else:
                    (a, channels), (b, k) = outer
                    a2 = graph.call_function(aten.reshape.default, (a, [edges, channels]))
                    b2 = graph.call_function(aten.reshape.default, (b, [edges, k]))
                    parts.append(graph.call_function(torch.ops.mlffc.scatter_outer.default, (a2, b2, index, num_nodes)))
            fused = parts[0] if len(parts) == 1 else graph.call_function(aten.cat.default, (parts, 1))
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
    return finish(graph_module)


def _is_zeros_2d(node) -> bool:
    if not is_call(node, *_ZEROS) or len(shape(node) or ()) != 2:
        return False
    return not node.users.keys() - {u for u in node.users if is_call(u, aten.index_add.default)}


def _cat_dim(node: Node) -> int:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return dim % 2 if dim < 0 else dim


def _outer_factors(block):
    """For block = view(mul(x [E, *A, 1], y [E, 1.., K]), [E, prod(A)*K]) (either operand order):
    ((x, prod(A)), (y, K)); else None."""
    if not is_call(block, *_VIEWS) or len(shape(block) or ()) != 2:
        return None
    product = block.args[0]
    if not is_call(product, aten.mul.Tensor):
        return None
    for x, y in (product.args, product.args[::-1]):
        sx, sy = shape(x), shape(y)
        if sx is None or sy is None or len(sx) != len(sy) or len(sx) < 3:
            continue
        inner, k = sx[1:-1], sy[-1]
        if sx[-1] != 1 or any(d != 1 for d in sy[1:-1]) or not all(isinstance(d, int) for d in (*inner, k)):
            continue
        if sx[0] != sy[0] or k == 1:
            continue
        channels = math.prod(inner)
        if shape(block)[1] != channels * k:
            continue
        return (x, channels), (y, k)
    return None
