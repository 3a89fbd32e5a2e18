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
    precision: str = "fp32"
    passes: tuple[str, ...] = ()
    threads: int = 1  # CPU threads the artifact is built for (AOTInductor bakes it in)
    settings: dict = field(default_factory=dict)

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


_DEFAULT_PASSES = ("remove_dead_code",)

register_target(Target("cpu", device="cpu", backend="aoti", backends=("aoti",), passes=_DEFAULT_PASSES,
                       description="x86-64/aarch64 CPU through AOTInductor, one thread per process (MD replicas)"))
for _name, _arch, _gpu in (("v100", "sm_70", "V100"), ("a100", "sm_80", "A100"), ("l4", "sm_89", "L4"), ("h100", "sm_90", "H100")):
    register_target(Target(_name, device="cuda", arch=_arch, backend="aoti", backends=("aoti",), passes=_DEFAULT_PASSES,
                           description=f"NVIDIA {_gpu} ({_arch}) through AOTInductor"))
