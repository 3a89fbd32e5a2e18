"""lower_broadcasts_to_matmuls: broadcasts and reductions across inner dimensions as matmuls
with constant 0/1 matrices.

Needs: the joint graph (after differentiation) with fake values on its nodes. After: every
multiply whose operand is broadcast along an inner dimension (e.g. the per-edge outer product
[E, C, 1] * [E, 1, K] of the moment student, and its backward) takes that operand expanded by a
matmul with a constant 0/1 matrix ([E, C] @ [C, C*K]); every sum over inner dimensions other
than the last is a matmul with a constant 0/1 matrix ([E, C*K] @ [C*K, K]). Results are exact
(each output is one product with 1 plus zeros, or a plain sum). ONNX Runtime's CPU kernels run
such broadcasts and middle-axis reductions elementwise, ~10-20x slower than one small GEMM
(measured: [5926, 8, 1] * [5926, 1, 3] 0.62 ms, as two matmuls + a multiply 0.08 ms), so the
onnxruntime backend requires this pass; compilers that fuse loops (Inductor, TVM) do not need it.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.fx import GraphModule

from mlffc.passes.core import EXACT, add_constant, aten, dtype, finish, graph_pass, is_call, set_arg, shape

MAX_COLUMNS = 4096  # larger constant matrices would cost more than the broadcast they replace


@graph_pass(budget=EXACT, stages=("joint",))
def lower_broadcasts_to_matmuls(graph_module: GraphModule, settings) -> GraphModule:
    graph = graph_module.graph
    for node in list(graph.nodes):
        out = shape(node)
        if out is None or len(out) < 2 or not all(isinstance(d, int) for d in out[1:]) or math.prod(out[1:]) > MAX_COLUMNS:
            continue
        if is_call(node, aten.mul.Tensor):
            for k, operand in enumerate(node.args[:2]):
                inner = shape(operand)
                if inner is None or len(inner) != len(out) or inner[0] != out[0] or inner[1:] == out[1:]:
                    continue
                if not all(isinstance(d, int) for d in inner[1:]) or dtype(operand) not in (torch.float32, torch.float64):
                    continue
                selection = _broadcast_matrix(inner[1:], out[1:], dtype(operand))
                with graph.inserting_before(node):
                    set_arg(node, k, _matmul_rows(graph_module, operand, selection, out[1:], "broadcast"))
        elif is_call(node, aten.sum.dim_IntList) and dtype(node) in (torch.float32, torch.float64):
            source = node.args[0]
            inner = shape(source)
            dims = sorted(d % len(inner) for d in node.args[1]) if inner else []
            keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
            if not dims or 0 in dims or dims == [len(inner) - 1] or not all(isinstance(d, int) for d in inner[1:]):
                continue
            kept = [inner[d] for d in range(1, len(inner)) if d not in dims]
            selection = _broadcast_matrix([1 if d in dims else inner[d] for d in range(1, len(inner))], inner[1:], dtype(node)).t()
            with graph.inserting_before(node):
                reduced = _matmul_rows(graph_module, source, selection, out[1:] if keepdim else kept, "reduce")
            node.replace_all_uses_with(reduced)
            graph.erase_node(node)
    return finish(graph_module)


def _broadcast_matrix(inner: list[int], outer: list[int], dtype) -> torch.Tensor:
    """M [prod(inner), prod(outer)] with M[p, q] = 1 where output element q reads input element p."""
    matrix = torch.zeros(math.prod(inner), math.prod(outer), dtype=dtype)
    strides = [math.prod(inner[k + 1:]) for k in range(len(inner))]
    for q, index in enumerate(itertools.product(*(range(d) for d in outer))):
        matrix[sum(0 if inner[k] == 1 else i * strides[k] for k, i in enumerate(index)), q] = 1
    return matrix


def _matmul_rows(graph_module: GraphModule, operand, matrix: torch.Tensor, shape_after: list[int], kind: str):
    """reshape(operand, [rows, -1]) @ matrix, reshaped to [rows, *shape_after]."""
    graph = graph_module.graph
    rows = graph.call_function(aten.sym_size.int, (operand, 0))
    flat = graph.call_function(aten.reshape.default, (operand, [rows, matrix.shape[0]]))
    constant = graph.get_attr(add_constant(graph_module, f"{kind}_{'x'.join(map(str, matrix.shape))}", matrix))
    product = graph.call_function(aten.mm.default, (flat, constant))
    return graph.call_function(aten.reshape.default, (product, [rows, *shape_after]))
