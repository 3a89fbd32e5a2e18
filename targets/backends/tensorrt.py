"""TensorRT through torch-tensorrt (CUDA only): the exported graph compiled into TensorRT engines
for ranges of atom, edge and structure counts, saved as an ExportedProgram that calls them.

TensorRT has no float64: the energy sum is truncated to float32 (`truncate_double`), so energies
carry float32 accumulation rounding; the acceptance check holds them to the same tolerance as any
other backend (nothing here widens it). torch-tensorrt's libraries come from
NVIDIA's package index; where they are missing this backend says so and its tests skip.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.export import ExportedProgram

from mlffc.errors import MlffcError
from mlffc.graph import SIGNATURE
from mlffc.targets.backends.base import Backend, Payload

PAYLOAD = "model.ep"
# (min, opt, max) of the dynamic sizes the engines are built for; override in a target's settings["shape_ranges"]
SHAPE_RANGES = {"atoms": (1, 300, 8192), "edges": (1, 8000, 262144), "structures": (1, 1, 64)}
_PRECISIONS = {"fp32": {torch.float32}, "tf32": {torch.float32}, "fp16": {torch.float16, torch.float32},
               "bf16": {torch.bfloat16, torch.float32}}


class TensorRT(Backend):
    name = "tensorrt"
    package = "torch-tensorrt"
    requires = (("torch-tensorrt", "torch_tensorrt"),)
    devices = ("cuda",)

    def lower(self, exported: ExportedProgram, target, out_dir: Path) -> Payload:
        import torch_tensorrt

        ranges = {**SHAPE_RANGES, **target.settings.get("shape_ranges", {})}
        inputs = [_input(torch_tensorrt, *spec, ranges) for spec in _INPUT_SPECS]
        try:
            module = torch_tensorrt.dynamo.compile(
                exported, arg_inputs=inputs, enabled_precisions=_PRECISIONS[target.precision], truncate_double=True,
                min_block_size=1, use_explicit_typing=False)
        except Exception as exc:  # torch-tensorrt raises many types; name the step that failed
            raise MlffcError(f"TensorRT could not compile the joint graph: {exc}") from exc
        path = out_dir / PAYLOAD
        examples = [torch.zeros(_shape(spec[0], ranges, 1), dtype=spec[1], device="cuda") for spec in _INPUT_SPECS]
        torch_tensorrt.save(module, str(path), output_format="exported_program", arg_inputs=examples)
        return Payload(path, facts={"shape_ranges": ranges})


# per graph input: (shape in named sizes, dtype), from the one signature
_INPUT_SPECS = [(tuple(spec["shape"]), getattr(torch, spec["dtype"])) for spec in SIGNATURE["inputs"]]


def _shape(dims, ranges, which: int) -> list[int]:
    return [ranges[d][which] if isinstance(d, str) else d for d in dims]


def _input(torch_tensorrt, dims, dtype, ranges):
    return torch_tensorrt.Input(min_shape=_shape(dims, ranges, 0), opt_shape=_shape(dims, ranges, 1),
                                max_shape=_shape(dims, ranges, 2), dtype=dtype)
