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

import torch
from torch.fx import GraphModule

from mlffc import ops
from mlffc.passes.core import EXACT, aten, edge_sum, finish, graph_pass, shape


@graph_pass(budget=EXACT, custom_ops=True)
def fuse_edge_scatter(graph_module: GraphModule, settings) -> GraphModule:
    ops.load()
    graph = graph_module.graph
    for node in list(graph.nodes):
        found = edge_sum(node)
        if found is None:
            continue
        target, index, blocks, outers, num_nodes = found
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
