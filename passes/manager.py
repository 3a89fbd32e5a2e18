"""The pass manager: the registry of passes and the ordered run over a graph module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch.fx import GraphModule

from mlffc.errors import MlffcError
from mlffc.passes.remove_dead_code import remove_dead_code


@dataclass(frozen=True)
class PassSettings:
    """Settings every pass receives (target precision and device)."""

    device: str = "cpu"
    precision: str = "fp32"


Pass = Callable[[GraphModule, PassSettings], GraphModule]

PASSES: dict[str, Pass] = {p.__name__: p for p in (remove_dead_code,)}


def run_passes(graph_module: GraphModule, names: tuple[str, ...] | list[str], settings: PassSettings) -> GraphModule:
    for name in names:
        if name not in PASSES:
            raise MlffcError(f"unknown pass '{name}'; available: {', '.join(PASSES)}")
        graph_module = PASSES[name](graph_module, settings)
    return graph_module
