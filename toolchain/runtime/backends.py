"""Loaders for the payload of each backend (AOTInductor with the op library it may need, ONNX
Runtime, TVM, TensorRT), by backend name.

Each loader imports its runtime only when called, so a deployment installs what its artifacts
use; a missing package is an MlffcError that names it. Every runner takes the graph inputs as
torch tensors and returns (energy, forces, stress) as torch tensors.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Callable

import torch

from mlffc.errors import MlffcError
from mlffc.io import sha256_file
from mlffc.runtime.manifest import Manifest, member


def aoti_runner(artifact: Path, manifest: Manifest) -> Callable:
    """The AOTInductor package, after the shared libraries it calls into (the mlffc fused ops) are
    loaded, and with TF32 matmuls switched on when it was built for tf32."""
    loaded = {sha256_file(Path(p)) for p in torch.ops.loaded_libraries if Path(p).is_file()}
    for name in manifest.backend.libraries:
        if manifest.payload[name] in loaded:
            continue  # this very library is already loaded (e.g. by the compiler in this process)
        try:
            torch.ops.load_library(str(member(artifact, name)))
        except (RuntimeError, OSError) as exc:
            raise MlffcError(f"{artifact}: cannot load its op library {name} (a different build of the mlffc ops may "
                             f"already be loaded in this process; load the artifact in a fresh one): {str(exc).splitlines()[0]}") from exc
    if manifest.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    return torch._inductor.aoti_load_package(str(member(artifact, manifest.backend.entry)))


def check_backend_versions(manifest: Manifest) -> None:
    """Refuse a payload built with another release of its runtime package, saying what to rebuild."""
    for package, built in manifest.backend.versions.items():
        if package == "torch":
            continue  # checked with the host (manifest.check_compatible)
        try:
            here = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise MlffcError(f"this artifact needs the Python package {package} ({built}): pip install {package}=={built}") from None
        if here.split("+")[0] != built.split("+")[0]:
            raise MlffcError(
                f"artifact built with {package} {built}, this process has {package} {here}: rebuild it here with "
                f"`mlffc compile --target {manifest.target.name} --backend {manifest.backend.name}`, or install {package}=={built}"
            )


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MlffcError(f"this artifact needs the Python package {package}: pip install {package} ({exc})") from exc


def onnxruntime_runner(artifact: Path, manifest: Manifest) -> Callable:
    check_backend_versions(manifest)
    ort = _import("onnxruntime", "onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = manifest.target.threads if manifest.target.device == "cpu" else 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = manifest.backend.facts.get("providers")
    if not (isinstance(providers, list) and providers and all(isinstance(p, str) for p in providers)):
        raise MlffcError(f"{artifact}: manifest field backend.facts.providers must be a list of onnxruntime provider names, got {providers!r}")
    missing = set(providers) - set(ort.get_available_providers())
    if missing:
        raise MlffcError(f"onnxruntime here lacks {', '.join(missing)} (install onnxruntime-gpu for CUDA)")
    session = ort.InferenceSession(str(member(artifact, manifest.backend.entry)), options, providers=providers)
    names = [i.name for i in session.get_inputs()]

    def run(*inputs):
        outputs = session.run(None, {name: tensor.cpu().numpy() for name, tensor in zip(names, inputs)})
        return tuple(torch.from_numpy(o) for o in outputs)

    return run


def tvm_runner(artifact: Path, manifest: Manifest) -> Callable:
    check_backend_versions(manifest)
    tvm = _import("tvm", "apache-tvm")
    from tvm import relax

    device = tvm.cuda() if manifest.target.device == "cuda" else tvm.cpu()
    machine = relax.VirtualMachine(tvm.runtime.load_module(str(member(artifact, manifest.backend.entry))), device)
    main = machine["main"]

    def run(*inputs):  # copies in (TVM wants 64-byte aligned buffers), zero-copy out
        outputs = main(*(tvm.runtime.tensor(t.cpu().numpy(), device) for t in inputs))
        return tuple(torch.from_dlpack(o) for o in outputs)

    return run


def tensorrt_runner(artifact: Path, manifest: Manifest) -> Callable:
    check_backend_versions(manifest)
    _import("torch_tensorrt", "torch-tensorrt")  # registers the TensorRT engine ops
    return torch.export.load(str(member(artifact, manifest.backend.entry))).module()


LOADERS: dict[str, Callable[[Path, Manifest], Callable]] = {
    "aoti": aoti_runner,
    "onnxruntime": onnxruntime_runner,
    "tvm": tvm_runner,
    "tensorrt": tensorrt_runner,
}
