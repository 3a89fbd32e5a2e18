"""AOTInductor: the exported graph compiled to native code in a `.pt2` package (CPU and CUDA).

Graphs that call the mlffc fused ops run them through AOTInductor's proxy executor, which finds
them in the dispatcher: the op library is shipped beside the package and loaded before it, from
Python (`mlffc.runtime.load`) or C++ (dlopen, then AOTIModelPackageLoader).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch.export import ExportedProgram

from mlffc import ops
from mlffc.targets.backends.base import Backend, Payload, uses_custom_ops

PAYLOAD = "model.pt2"


class AotInductor(Backend):
    name = "aoti"
    devices = ("cpu", "cuda")
    custom_ops = True

    def lower(self, exported: ExportedProgram, target, out_dir: Path) -> Payload:
        """Compile for `target.threads` threads on CPU (the count is baked into the generated
        code); on CUDA with TF32 matmuls when the target's precision is tf32."""
        libraries = []
        if uses_custom_ops(exported):
            libraries.append(out_dir / ops.LIBRARY)
            shutil.copyfile(ops.load(), libraries[0])
        path = out_dir / PAYLOAD
        previous = torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32
        torch.set_num_threads(target.threads)
        torch.backends.cuda.matmul.allow_tf32 = target.precision == "tf32"
        try:
            with warnings.catch_warnings():
                # torch 2.13's inductor deep-copies its own graph (after_aot.debug_wrapper), which
                # constructs pytree LeafSpecs and so trips torch's deprecation of LeafSpec: torch's
                # warning about torch's code, nothing a user of mlffc can act on.
                warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                        category=FutureWarning)
                torch._inductor.aoti_compile_and_package(
                    exported, package_path=str(path), inductor_configs={"cpp.threads": target.threads}
                )
        finally:
            torch.set_num_threads(previous[0])
            torch.backends.cuda.matmul.allow_tf32 = previous[1]
        return Payload(path, libraries)
