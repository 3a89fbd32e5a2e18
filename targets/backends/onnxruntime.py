"""ONNX Runtime: the exported graph as an ONNX model (opset 20) run by onnxruntime's CPU or CUDA
execution provider.

The joint graph (forward and its traced backward) exports through `torch.onnx.export(dynamo=True)`
once `silu_backward`, which has no ONNX translation, is decomposed into elementwise ops (the
required pass decompose_silu_backward); inner-dimension broadcasts and reductions, which ONNX
Runtime's CPU kernels run ~10x slower than small GEMMs, become matmuls (lower_broadcasts_to_matmuls).
Graphs
calling the mlffc op library cannot be exported (ONNX Runtime does not know those kernels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.export import ExportedProgram

from mlffc.graph import GRAPH_OUTPUTS
from mlffc.errors import MlffcError
from mlffc.graph import GRAPH_INPUTS
from mlffc.targets.backends.base import Backend, Payload

PAYLOAD = "model.onnx"
OPSET = 20


class OnnxRuntime(Backend):
    name = "onnxruntime"
    package = "onnxruntime"
    requires = (("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("onnxscript", "onnxscript"))
    devices = ("cpu", "cuda")
    required_passes = ("decompose_silu_backward", "lower_broadcasts_to_matmuls")

    def lower(self, exported: ExportedProgram, target, out_dir: Path) -> Payload:
        path = out_dir / PAYLOAD
        try:
            program = torch.onnx.export(exported, (), dynamo=True, opset_version=OPSET, input_names=list(GRAPH_INPUTS),
                                        output_names=list(GRAPH_OUTPUTS), external_data=False, verbose=False)
        except Exception as exc:  # the exporter raises many types; name the step that failed
            raise MlffcError(f"ONNX export of the joint graph failed: {exc}") from exc
        program.save(str(path), external_data=False)  # into the compiler's temporary artifact directory
        providers = ["CUDAExecutionProvider"] if target.device == "cuda" else ["CPUExecutionProvider"]
        return Payload(path, facts={"opset": OPSET, "providers": providers})
