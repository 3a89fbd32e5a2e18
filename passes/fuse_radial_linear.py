"""fuse_radial_linear: (radial basis x cutoff) (x) one-hot(neighbour species) -> first linear
layer, as one op mlffc::species_linear.

Needs: the energy graph (before differentiation) with fake values on its nodes, the species
one-hot still a lookup into a constant table (so before fold_constants, which composes such
lookups). After: every `mm(view(x [E, B, 1] * onehot[s] [E, 1, S],
[E, B*S]), W^T)` (or addmm with a bias) becomes species_linear(x, s, W') (+ bias) with
W'[s, b, o] = W[o, b*S + s] computed once; the backward, traced later by `differentiate`, is
mlffc::species_linear_backward. Each edge costs B*O multiply-adds instead of B*S*O, and the
[E, B*S] pair tensor and its gradient disappear. The radial basis times its cutoff envelope (x)
stays an elementwise chain that Inductor fuses into one loop feeding the op.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule

from mlffc import ops
from mlffc.passes.core import EXACT, add_constant, aten, constant, finish, graph_pass, is_call, shape, transposed_constant

_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


@graph_pass(budget=EXACT, custom_ops=True, before=("fold_constants",))
def fuse_radial_linear(graph_module: GraphModule, settings) -> GraphModule:
    ops.load()
    graph = graph_module.graph
    for node in list(graph.nodes):
        weight_node = transposed_constant(graph_module, node.args[-1]) if is_call(node, aten.mm.default, aten.addmm.default) else None
        if weight_node is None or not is_call(node.args[-2], *_VIEWS):
            continue
        weight = constant(graph_module, weight_node)
        match = _radial_onehot(graph_module, node.args[-2].args[0])
        if match is None:
            continue
        x, species, table = match
        basis, kinds = shape(x)[1], table.shape[1]
        if weight.shape[1] != basis * kinds:
            continue
        per_species = weight.reshape(weight.shape[0], basis, kinds).permute(2, 1, 0)
        name = add_constant(graph_module, f"{weight_node.target}_per_species", per_species)
        with graph.inserting_before(node):
            if not torch.equal(table.argmax(1), torch.arange(table.shape[0])):
                lookup = graph.get_attr(add_constant(graph_module, f"{weight_node.target}_species_lookup", table.argmax(1)))
                species = graph.call_function(aten.index.Tensor, (lookup, [species]))
            x2 = graph.call_function(aten.reshape.default, (x, [graph.call_function(aten.sym_size.int, (species, 0)), basis]))
            fused = graph.call_function(torch.ops.mlffc.species_linear.default, (x2, species, graph.get_attr(name)))
            if node.target == aten.addmm.default:
                fused = graph.call_function(aten.add.Tensor, (fused, node.args[0]))
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
    return finish(graph_module)


def _radial_onehot(graph_module: GraphModule, product):
    """For mul(x [E, B, 1], unsqueeze(index(T, [s]), 1) [E, 1, S]) with T a constant whose rows
    are one-hot: (x, s, T); else None."""
    if not is_call(product, aten.mul.Tensor):
        return None
    for x, other in (product.args, product.args[::-1]):
        sx = shape(x)
        if sx is None or len(sx) != 3 or sx[2] != 1 or not isinstance(sx[1], int):
            continue
        if not (is_call(other, aten.unsqueeze.default) and other.args[1] == 1 and is_call(other.args[0], aten.index.Tensor)):
            continue
        table_node, indices = other.args[0].args
        table = constant(graph_module, table_node)
        if table is None or table.dim() != 2 or len(indices) != 1 or not _one_hot_rows(table):
            continue
        return x, indices[0], table
    return None


def _one_hot_rows(table: torch.Tensor) -> bool:
    return bool(((table == 0) | (table == 1)).all() and (table.sum(1) == 1).all())
