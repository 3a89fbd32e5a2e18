"""quantize_weights: int8 weight-only quantization of the linear layers.

Needs: the energy graph (before differentiation), after fold_constants (which would fold the
dequantization back into float weights) and convert_precision (which converts constant weights
only). After: every constant weight of a
linear layer (mm/addmm, mlffc::species_linear, mlffc::linear_silu) is stored as int8 with one
float32 scale per output channel (symmetric, max |w| -> 127) and dequantized in the graph
(`int8 -> float32 * scale`); activations stay in floating point. Weight-only because dynamic
activation quantization breaks autograd through the linear layers, i.e. the forces. The weights
shrink 4x; arithmetic is unchanged, so expect no speed-up on CPU at these model sizes.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule

from mlffc.passes.core import Budget, add_constant, aten, constant, finish, graph_pass, set_arg, weight_uses

BUDGET = Budget(energy_per_atom=5e-3, forces=0.1, teacher_force_mae=0.01)


@graph_pass(budget=BUDGET, after=("fold_constants", "convert_precision"))
def quantize_weights(graph_module: GraphModule, settings) -> GraphModule:
    graph = graph_module.graph
    for user, index, input_dim in weight_uses(graph_module):
        weight_node = user.args[index]
        weight = constant(graph_module, weight_node)
        if not weight.is_floating_point():
            continue
        scale = (weight.abs().amax(dim=input_dim, keepdim=True) / 127).clamp_min(torch.finfo(torch.float32).tiny)
        quantized = (weight / scale).round().clamp(-127, 127).to(torch.int8)
        with graph.inserting_before(user):
            q = graph.get_attr(add_constant(graph_module, f"{weight_node.target}_int8", quantized))
            s = graph.get_attr(add_constant(graph_module, f"{weight_node.target}_scale", scale.to(weight.dtype)))
            dequantized = graph.call_function(aten.mul.Tensor, (graph.call_function(aten._to_copy.default, (q,), {"dtype": weight.dtype}), s))
        set_arg(user, index, dequantized)
    return finish(graph_module)
