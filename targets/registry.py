"""Compile targets: a name, a device, a default backend and its settings, in one registry
with a register hook (as nequip's compile targets)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mlffc.errors import MlffcError


@dataclass(frozen=True)
class Target:
    name: str
    device: str  # "cpu" or "cuda"
    backend: str  # default backend
    backends: tuple[str, ...]
    description: str
    arch: str | None = None  # CUDA compute capability, e.g. "sm_80"
    precision: str = "fp32"  # of the linear layers: fp32, tf32 (CUDA), bf16, fp16
    passes: tuple[str, ...] = ()  # pass names; they run in the pass manager's order
    threads: int = 1  # CPU threads the artifact is built for (AOTInductor bakes it in)
    settings: dict = field(default_factory=dict)  # accumulation ("fp64"/"fp32"), layers (per-layer precision), backend options

    def as_dict(self) -> dict:
        return asdict(self)


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    if target.backend not in target.backends:
        raise ValueError(f"target {target.name}: default backend {target.backend} is not among {target.backends}")
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise MlffcError(f"unknown target '{name}'; available: {', '.join(TARGETS)}")
    return TARGETS[name]


# Clean-up runs everywhere. The fusions into mlffc custom ops run where they were measured to pay
# (bench/bench_compiler.py, bench/bench_edge_moments.py, docs/compiler.md): on CPU the edge moments
# (mlffc::edge_moments, one op per interaction) and the edge scatter for the sums it leaves. Their
# CUDA kernels build on GPU machines but are not measured yet (edge_moments has none), so GPU
# targets start from the clean-up list.
_CLEANUP = ("remove_identity_ops", "fold_constants", "eliminate_common_subexpressions", "remove_dead_code")
CPU_PASSES = ("fuse_edge_moments", "fuse_edge_scatter", *_CLEANUP)

register_target(Target("cpu", device="cpu", backend="aoti", backends=("aoti", "onnxruntime", "tvm"), passes=CPU_PASSES,
                       description="this CPU (vector ISA in the manifest), 1 thread per process"))
for _name, _arch, _gpu in (("v100", "sm_70", "V100"), ("a100", "sm_80", "A100"), ("l4", "sm_89", "L4"), ("h100", "sm_90", "H100")):
    register_target(Target(_name, device="cuda", arch=_arch, backend="aoti", backends=("aoti", "onnxruntime", "tvm", "tensorrt"),
                           passes=_CLEANUP, description=f"NVIDIA {_gpu} ({_arch})"))
