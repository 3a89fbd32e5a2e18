"""AOTInductor: the exported graph compiled to native code in a `.pt2` package."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.export import ExportedProgram

from mlffc.targets.registry import Target

PAYLOAD = "model.pt2"


class AotInductor:
    name = "aoti"

    def unavailable_reason(self) -> str | None:
        return None  # ships with torch

    def lower(self, exported: ExportedProgram, target: Target, out_dir: Path) -> list[Path]:
        """Compile for `target.threads` threads (the count is baked into the generated code)."""
        path = out_dir / PAYLOAD
        previous = torch.get_num_threads()
        torch.set_num_threads(target.threads)
        try:
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(path), inductor_configs={"cpp.threads": target.threads}
            )
        finally:
            torch.set_num_threads(previous)
        return [path]
