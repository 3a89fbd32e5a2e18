"""What every backend provides, and the payload it hands back."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from torch.export import ExportedProgram


@dataclass
class Payload:
    """entry: the file the runtime loads; libraries: shared libraries it must load first (the
    mlffc op library); facts: backend details for the manifest (e.g. the LLVM target)."""

    entry: Path
    libraries: list[Path] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [self.entry, *self.libraries]


class Backend:
    name: str = ""
    package: str | None = None  # the runtime's distribution on PyPI (None: ships with torch); its version is recorded
    requires: tuple[tuple[str, str], ...] = ()  # (distribution, import name) needed to lower
    devices: tuple[str, ...] = ("cpu",)
    custom_ops: bool = False  # can it run graphs calling the mlffc op library?
    required_passes: tuple[str, ...] = ()  # passes that make the graph lowerable by this backend

    def unavailable_reason(self) -> str | None:
        missing = [dist for dist, module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            return f"it needs the Python package(s) {', '.join(missing)}, not installed here (pip install {' '.join(missing)})"
        return None

    def versions(self) -> dict[str, str]:
        """Versions the payload depends on, checked again when it is loaded."""
        import torch

        versions = {"torch": torch.__version__}
        if self.package:
            versions[self.package] = importlib.metadata.version(self.package)
        return versions

    def lower(self, exported: ExportedProgram, target, out_dir: Path) -> Payload:
        raise NotImplementedError


def uses_custom_ops(exported: ExportedProgram) -> bool:
    return any(node.op == "call_function" and str(node.target).startswith("mlffc.") for node in exported.graph.nodes)
