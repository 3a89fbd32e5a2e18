"""The fused operators of the compiler's fusion passes: C++ (and CUDA) kernels registered with
`TORCH_LIBRARY(mlffc, ...)`, built once per machine into a cache directory.

Compile side only. `load()` builds (or reuses) the shared library, loads it into this process and
adds what tracing needs and the C++ library does not carry: fake kernels (symbolic shapes) and the
autograd formulas that connect each forward op to its backward op. An artifact that uses the ops
ships the library (`LIBRARY`), and `mlffc.runtime` loads it before the compiled graph; from C++,
dlopen the same file before `AOTIModelPackageLoader`.

Ops (schemas in csrc/ops.cpp):
  scatter_outer(a [E,C], b [E,K], index [E], N) -> [N, C*K]     out[index[e], c*K+k] += a[e,c] b[e,k]
  species_linear(x [E,B], species [E], weight [S,B,O]) -> [E,O]  x[e] @ weight[species[e]]
  linear_silu(x [M,K], weight [N,K], bias [N]) -> (silu(h), h)    h = x weight^T + bias
  edge_moments(weights [E,L*C], basis [E,sum K_l], centre [E], N, orders [K_0..K_L-1]) -> [N, C*sum max(K_l,1)]
      per block l: out[centre[e], c*K_l+k] += w_l[e,c] y_l[e,k] (K_l = 0: += w_l[e,c]); centre sorted
each with a `*_backward` op (gradients of the differentiable inputs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

from mlffc.errors import MlffcError

SOURCES = Path(__file__).parent / "csrc"
LIBRARY = "mlffc_ops.so"  # file name inside an artifact
_ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}
_lock = threading.Lock()
_loaded: Path | None = None


def cache_dir() -> Path:
    """Where built libraries live: $MLFFC_CACHE_DIR, else ~/.cache/mlffc."""
    return Path(os.environ.get("MLFFC_CACHE_DIR", Path.home() / ".cache" / "mlffc"))


def _with_cuda() -> bool:
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and CUDA_HOME is not None and shutil.which("nvcc") is not None


def _build() -> Path:
    """Build the library for this torch and CPU vector ISA (and CUDA where nvcc and a GPU exist)."""
    from torch.utils.cpp_extension import load

    sources = [SOURCES / "ops.cpp"] + ([SOURCES / "ops_cuda.cu"] if _with_cuda() else [])
    flags = ["-O3", *_ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])]
    key = hashlib.sha256()
    for part in [torch.__version__, str(torch.version.cuda), *flags, *(s.read_bytes().decode() for s in sources)]:
        key.update(part.encode())
    build_dir = cache_dir() / "ops" / key.hexdigest()[:16]
    build_dir.mkdir(parents=True, exist_ok=True)
    path = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])  # ninja from the venv when not activated
    try:
        load(name="mlffc_ops", sources=[str(s) for s in sources], build_directory=str(build_dir), extra_cflags=flags,
             extra_cuda_cflags=["-O3"], is_python_module=False, verbose=False)
    except (RuntimeError, OSError) as exc:
        raise MlffcError(f"building the mlffc op library failed (needs a C++ compiler and ninja; see {build_dir}): {exc}") from exc
    finally:
        os.environ["PATH"] = path
    return build_dir / "mlffc_ops.so"


def load() -> Path:
    """Build or reuse the op library, load it, register fake kernels and autograd; its path."""
    global _loaded
    with _lock:
        if _loaded is None:
            path = _build()
            torch.ops.load_library(str(path))
            _register_python_parts()
            _loaded = path
    return _loaded


def _register_python_parts() -> None:
    ops = torch.ops.mlffc

    @torch.library.register_fake("mlffc::scatter_outer")
    def _(a, b, index, num_nodes):
        return a.new_empty(num_nodes, a.shape[1] * b.shape[1])

    @torch.library.register_fake("mlffc::scatter_outer_backward")
    def _(grad, a, b, index):
        return torch.empty_like(a, memory_format=torch.contiguous_format), torch.empty_like(b, memory_format=torch.contiguous_format)

    @torch.library.register_fake("mlffc::species_linear")
    def _(x, species, weight):
        return x.new_empty(x.shape[0], weight.shape[2])

    @torch.library.register_fake("mlffc::species_linear_backward")
    def _(grad, species, weight):
        return grad.new_empty(grad.shape[0], weight.shape[1])

    @torch.library.register_fake("mlffc::linear_silu")
    def _(x, weight, bias):
        h = x.new_empty(x.shape[0], weight.shape[0])
        return torch.empty_like(h), h

    @torch.library.register_fake("mlffc::linear_silu_backward")
    def _(grad, h, weight):
        return grad.new_empty(grad.shape[0], weight.shape[1])

    @torch.library.register_fake("mlffc::edge_moments")
    def _(weights, basis, centre, num_nodes, orders):
        return weights.new_empty(num_nodes, weights.shape[1] // len(orders) * sum(max(k, 1) for k in orders))

    @torch.library.register_fake("mlffc::edge_moments_backward")
    def _(grad, weights, basis, centre, orders):
        return weights.new_empty(weights.shape), basis.new_empty(basis.shape)

    def scatter_outer_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], inputs[2])

    def scatter_outer_grad(ctx, grad):
        a, b, index = ctx.saved_tensors
        grad_a, grad_b = ops.scatter_outer_backward(grad, a, b, index)
        return grad_a, grad_b, None, None

    def edge_moments_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], inputs[2])
        ctx.orders = inputs[4]

    def edge_moments_grad(ctx, grad):
        weights, basis, centre = ctx.saved_tensors
        grad_weights, grad_basis = ops.edge_moments_backward(grad, weights, basis, centre, ctx.orders)
        return grad_weights, grad_basis, None, None, None

    def species_linear_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1], inputs[2])

    def species_linear_grad(ctx, grad):
        species, weight = ctx.saved_tensors
        return ops.species_linear_backward(grad, species, weight), None, None

    def linear_silu_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # h is normally used by the backward only: no zero gradient for it
        ctx.save_for_backward(output[1], inputs[1])

    def linear_silu_grad(ctx, grad_y, grad_h):
        h, weight = ctx.saved_tensors
        grad_x = None if grad_y is None else ops.linear_silu_backward(grad_y, h, weight)
        if grad_h is not None:
            grad_x = grad_h @ weight if grad_x is None else grad_x + grad_h @ weight
        return grad_x, None, None

    torch.library.register_autograd("mlffc::scatter_outer", scatter_outer_grad, setup_context=scatter_outer_context)
    torch.library.register_autograd("mlffc::species_linear", species_linear_grad, setup_context=species_linear_context)
    torch.library.register_autograd("mlffc::linear_silu", linear_silu_grad, setup_context=linear_silu_context)
    torch.library.register_autograd("mlffc::edge_moments", edge_moments_grad, setup_context=edge_moments_context)
