"""What every pass shares: its settings, its error budget, and small graph helpers.

A pass is a function `(graph_module, settings) -> graph_module` in its own file, named verb_noun,
whose docstring says what it needs before it and guarantees after it. `@graph_pass` attaches the
pass's error budget (checked on the calibration set by the pass manager), whether the graph it
produces calls the mlffc op library (only AOTInductor can run those), and its place: the stage
it runs in and the passes that must run before (`after`) or after it (`before`), which the pass
manager's lists satisfy (tests/passes/test_manager.py checks them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch._guards import detect_fake_mode
from torch.fx import GraphModule, Node
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from mlffc.errors import MlffcError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
ACCUMULATIONS = ("fp64", "fp32")
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


@dataclass(frozen=True)
class Budget:
    """The most a pass may change the calibration results: max |dE| per atom (eV) and max |dF|
    (eV/Å) against the graph before it, and the rise in force MAE against the teacher (eV/Å)."""

    energy_per_atom: float
    forces: float
    teacher_force_mae: float

    def exceeded_by(self, error: dict[str, float]) -> list[str]:
        return [f"{k} {error[k]:.3g} > {getattr(self, k):.3g}" for k in ("energy_per_atom", "forces", "teacher_force_mae")
                if error.get(k) is not None and error[k] > getattr(self, k)]


# Rounding-level changes (reordered fp32 sums; forces reach ~100 eV/Å on the compact calibration
# example, so ~1e-6 relative is ~1e-4 absolute): what an exact rewrite may move.
EXACT = Budget(energy_per_atom=1e-5, forces=5e-4, teacher_force_mae=1e-4)


@dataclass(frozen=True)
class PassSettings:
    """Settings every pass receives.

    precision: arithmetic of the linear layers (fp32, tf32 on CUDA, bf16, fp16); layers: per-layer
    overrides, constant-name prefix (e.g. "readout.4" or "readout_4") -> precision; accumulation:
    dtype of the energy sum (fp64 or fp32; the graph's output stays float64); budgets: per-pass
    Budget overrides by pass name."""

    device: str = "cpu"
    precision: str = "fp32"
    accumulation: str = "fp64"
    layers: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, Budget] = field(default_factory=dict)

    def __post_init__(self):
        for name, value in [("precision", self.precision), *((f"layer {k}", v) for k, v in self.layers.items())]:
            if value not in PRECISIONS:
                raise MlffcError(f"{name}: unknown precision '{value}'; choose one of {', '.join(PRECISIONS)}")
        if self.accumulation not in ACCUMULATIONS:
            raise MlffcError(f"unknown energy accumulation '{self.accumulation}'; choose one of {', '.join(ACCUMULATIONS)}")

    def layer_precision(self, constant_name: str) -> str:
        """The precision of the layer whose weight constant is `constant_name` (longest prefix wins)."""
        matches = [k for k in self.layers if constant_name.startswith(k.replace(".", "_"))]
        return self.layers[max(matches, key=len)] if matches else self.precision


Pass = Callable[[GraphModule, PassSettings], GraphModule]


STAGES = ("energy", "joint")  # before differentiation, after it


def graph_pass(budget: Budget | Callable[[PassSettings], Budget] = EXACT, custom_ops: bool = False,
               stages: tuple[str, ...] = ("energy",), after: tuple[str, ...] = (), before: tuple[str, ...] = ()):
    """Mark a function as a pass: its default error budget (fixed, or a function of the settings),
    whether its output graph calls mlffc custom ops, the stages it may run in, and the names of
    the passes that must run before it (`after`) and after it (`before`) when both run."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"stages {stages}: choose from {STAGES}")

    def mark(fn: Pass) -> Pass:
        fn.budget = budget
        fn.custom_ops = custom_ops
        fn.stages, fn.after, fn.before = tuple(stages), tuple(after), tuple(before)
        return fn

    return mark


def budget_of(graph_pass_fn: Pass, settings: PassSettings) -> Budget:
    name = graph_pass_fn.__name__
    if name in settings.budgets:
        return settings.budgets[name]
    return graph_pass_fn.budget(settings) if callable(graph_pass_fn.budget) else graph_pass_fn.budget


# --- graph helpers -------------------------------------------------------------------------------

aten = torch.ops.aten


def is_call(node, *targets) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and node.target in targets


def constant(graph_module: GraphModule, node) -> torch.Tensor | None:
    """The tensor behind a get_attr node, else None."""
    if isinstance(node, Node) and node.op == "get_attr":
        return getattr(graph_module, node.target)
    return None


def add_constant(graph_module: GraphModule, name: str, tensor: torch.Tensor) -> str:
    """Register `tensor` as a new constant named after `name` (suffixed to be unique)."""
    candidate, k = name, 0
    while hasattr(graph_module, candidate):
        k += 1
        candidate = f"{name}_{k}"
    graph_module.register_buffer(candidate, tensor.detach().contiguous())
    return candidate


def shape(node) -> tuple | None:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def dtype(node) -> torch.dtype | None:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return value.dtype if isinstance(value, torch.Tensor) else None


def transposed_constant(graph_module: GraphModule, node) -> Node | None:
    """W's get_attr node when `node` is t(W) of a constant W, else None: how a linear layer's
    weight appears in a freshly traced graph (mm(x, t(W)), addmm(b, x, t(W)))."""
    if is_call(node, aten.t.default) and constant(graph_module, node.args[0]) is not None:
        return node.args[0]
    return None


def weight_uses(graph_module: GraphModule) -> list[tuple[Node, int, int]]:
    """Every constant weight operand of a linear layer as (user node, argument index, the
    weight's input-feature dim): mm/addmm through t(W) or a stored W^T, mlffc::species_linear
    and mlffc::linear_silu."""
    uses = []
    for node in graph_module.graph.nodes:
        if is_call(node, aten.mm.default, aten.addmm.default):
            rhs = node.args[-1]
            if transposed_constant(graph_module, rhs) is not None:
                uses.append((rhs, 0, 1))
            elif constant(graph_module, rhs) is not None:
                uses.append((node, len(node.args) - 1, 0))
        elif node.op == "call_function" and str(node.target) in ("mlffc.species_linear.default", "mlffc.linear_silu.default"):
            weight_index = 2 if "species_linear" in str(node.target) else 1
            if constant(graph_module, node.args[weight_index]) is not None:
                uses.append((node, weight_index, 1))
    return uses


def set_arg(node: Node, index: int, value) -> None:
    args = list(node.args)
    args[index] = value
    node.args = tuple(args)


def finish(graph_module: GraphModule) -> GraphModule:
    """Drop dead nodes, check and recompile, and refresh every node's fake value (shapes and
    dtypes with symbolic sizes) so the next pass can read them."""
    graph_module.graph.eliminate_dead_code()
    graph_module.graph.lint()
    graph_module.recompile()
    inputs = [n.meta["val"] for n in graph_module.graph.nodes if n.op == "placeholder"]
    FakeTensorProp(graph_module, detect_fake_mode(inputs)).propagate_dont_convert_inputs(*inputs)
    return graph_module


_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_ZEROS = (aten.zeros.default, aten.new_zeros.default)


def edge_sum(node):
    """The per-edge sum into atoms that the edge fusions rewrite, else None: node is
    `index_add(zeros [N, W], 0, index, src)` whose src is a concatenation (dim 1) of blocks, at
    least one of them an outer product a [E, C] (x) b [E, K] flattened to [E, C*K]. Returns
    (the zeros node, index, blocks, per block its outer_factors or None for a plain [E, M]
    block, N)."""
    if not is_call(node, aten.index_add.default) or len(node.args) != 4 or node.args[1] != 0 or node.kwargs:
        return None
    target, _, index, source = node.args
    if not _is_zeros_2d(target) or shape(source) is None:
        return None
    blocks = list(source.args[0]) if is_call(source, aten.cat.default) and _cat_dim(source) == 1 else [source]
    outers = [outer_factors(block) for block in blocks]
    if not any(outers):
        return None
    num_nodes = target.args[0][0] if target.target == aten.zeros.default else target.args[1][0]
    return target, index, blocks, outers, num_nodes


def _is_zeros_2d(node) -> bool:
    if not is_call(node, *_ZEROS) or len(shape(node) or ()) != 2:
        return False
    return not node.users.keys() - {u for u in node.users if is_call(u, aten.index_add.default)}


def _cat_dim(node: Node) -> int:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return dim % 2 if dim < 0 else dim


def outer_factors(block):
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


def copy_graph_module(graph_module: GraphModule) -> GraphModule:
    """A new graph module with a copy of the graph (node metadata copied shallowly) sharing the
    constants: passes add constants instead of changing them, so the original stays valid."""
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(graph_module.graph, {}))
    copy = GraphModule(graph_module, graph)
    for name, tensor in graph_module.named_buffers():
        if not hasattr(copy, name):
            copy.register_buffer(name, tensor)
    return copy
