"""convert_precision: run linear layers in fp32, tf32, bf16 or fp16 (per layer), and accumulate the
energy sum in fp64 or fp32.

Needs: the energy graph (before differentiation, so the backward traced later by `differentiate`
runs each layer in the same precision), after fuse_radial_linear and fuse_linear_activation
(it converts their ops too) and before quantize_weights (it converts float constant weights;
int8 ones it would leave alone). After: each linear layer (mm/addmm, mlffc::species_linear, mlffc::linear_silu)
whose precision (settings.layer_precision of its weight's name) is bf16 or fp16 takes its
activation cast down, a stored low-precision copy of its weight and bias, and returns float32;
edge geometry, radial bases, sums over neighbours and the energy stay float32. With
accumulation="fp32" the float64 tail (per-atom energies + reference energies, sum per structure)
runs in float32 and only the output is cast to float64. tf32 changes no node: it is a CUDA matmul
mode the backend switches on (Ampere and newer); on a CPU target it is refused.
"""

from __future__ import annotations

import operator

import torch
from torch.fx import GraphModule, Node

from mlffc.errors import MlffcError
from mlffc.passes.core import (DTYPES, EXACT, Budget, add_constant, aten, constant, dtype, finish, graph_pass,
                               set_arg, weight_uses)

# Budgets by the lowest precision used: max |dE| per atom (eV), max |dF| (eV/Å), teacher force MAE rise (eV/Å).
BUDGETS = {
    "fp32": EXACT,
    "tf32": Budget(energy_per_atom=1e-3, forces=2e-2, teacher_force_mae=2e-3),
    "fp16": Budget(energy_per_atom=5e-3, forces=0.1, teacher_force_mae=1e-2),
    "bf16": Budget(energy_per_atom=2e-2, forces=0.3, teacher_force_mae=3e-2),
}
_ORDER = ("fp32", "tf32", "fp16", "bf16")


def _budget(settings) -> Budget:
    return BUDGETS[max([settings.precision, *settings.layers.values()], key=_ORDER.index)]


@graph_pass(budget=_budget, after=("fuse_radial_linear", "fuse_linear_activation"), before=("quantize_weights",))
def convert_precision(graph_module: GraphModule, settings) -> GraphModule:
    if "tf32" in (settings.precision, *settings.layers.values()) and settings.device != "cuda":
        raise MlffcError("tf32 is a CUDA matmul mode (Ampere and newer); on a CPU target use fp32, bf16 or fp16")
    for user, index, _ in weight_uses(graph_module):
        layer = user if user.op == "call_function" and user.target != aten.t.default else next(iter(user.users))
        low = DTYPES[settings.layer_precision(user.args[index].target)]
        if low in (torch.float32, torch.float64):
            continue
        _lower_layer(graph_module, layer, low)
    if settings.accumulation == "fp32":
        _accumulate_in_fp32(graph_module)
    return finish(graph_module)


def _lower_layer(graph_module: GraphModule, layer: Node, low: torch.dtype) -> None:
    """Cast the layer's floating inputs to `low` (constants: stored copies) and its outputs back."""
    graph = graph_module.graph
    transposes = [n for n in layer.all_input_nodes if n.target == aten.t.default and constant(graph_module, n.args[0]) is not None]
    for node in [*transposes, layer]:
        for k, arg in enumerate(node.args):
            if not isinstance(arg, Node) or arg in transposes or dtype(arg) not in (torch.float32, torch.float64):
                continue
            value = constant(graph_module, arg)
            with graph.inserting_before(node):
                if value is not None:
                    cast = graph.get_attr(add_constant(graph_module, f"{arg.target}_{str(low).split('.')[-1]}", value.to(low)))
                else:
                    cast = graph.call_function(aten._to_copy.default, (arg,), {"dtype": low})
            set_arg(node, k, cast)
    outputs = [u for u in layer.users if u.target == operator.getitem] if isinstance(layer.meta.get("val"), tuple) else [layer]
    for output in outputs:
        with graph.inserting_after(output):
            up = graph.call_function(aten._to_copy.default, (output,), {"dtype": torch.float32})
        output.replace_all_uses_with(up, delete_user_cb=lambda user: user is not up)


def _accumulate_in_fp32(graph_module: GraphModule) -> None:
    graph = graph_module.graph
    for node in list(graph.nodes):
        if dtype(node) != torch.float64:
            continue
        value = constant(graph_module, node)
        if value is not None:
            node.target = add_constant(graph_module, f"{node.target}_fp32", value.float())
        elif node.kwargs.get("dtype") == torch.float64:
            node.kwargs = {**node.kwargs, "dtype": torch.float32}
    output = next(n for n in graph.nodes if n.op == "output")
    energy = output.args[0]
    with graph.inserting_before(output):
        output.args = (graph.call_function(aten._to_copy.default, (energy,), {"dtype": torch.float64}),)
