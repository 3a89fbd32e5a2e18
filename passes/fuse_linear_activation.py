"""fuse_linear_activation: MLP layer + SiLU -> mlffc::linear_silu.

Needs: the energy graph (before differentiation) with fake values on its nodes. After: every
`silu(addmm(bias, x, W^T))` with constant W and bias becomes the first output of
linear_silu(x, W, bias), which also returns the pre-activation h for its backward op
mlffc::linear_silu_backward ((grad * silu'(h)) @ W, traced later by `differentiate`).
"""

from __future__ import annotations

import operator

import torch
from torch.fx import GraphModule

from mlffc import ops
from mlffc.passes.core import EXACT, aten, constant, finish, graph_pass, is_call, transposed_constant


@graph_pass(budget=EXACT, custom_ops=True)
def fuse_linear_activation(graph_module: GraphModule, settings) -> GraphModule:
    ops.load()
    graph = graph_module.graph
    for node in list(graph.nodes):
        if not is_call(node, aten.silu.default):
            continue
        layer = node.args[0]
        if not is_call(layer, aten.addmm.default) or constant(graph_module, layer.args[0]) is None:
            continue
        bias, x, transposed = layer.args
        weight = transposed_constant(graph_module, transposed)
        if weight is None:
            continue
        with graph.inserting_before(node):
            fused = graph.call_function(torch.ops.mlffc.linear_silu.default, (x, weight, bias))
            output = graph.call_function(operator.getitem, (fused, 0))
        node.replace_all_uses_with(output)
        graph.erase_node(node)
    return finish(graph_module)
