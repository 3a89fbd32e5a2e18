"""Backends: each turns an exported joint graph into the payload files of one artifact.

A backend names the Python package it needs (a clear MlffcError names it when missing), the
devices it lowers for, whether it can run graphs that call the mlffc op library (custom ops), and
the versions an artifact records (and `mlffc.runtime.load` checks).
"""

from __future__ import annotations

from mlffc.errors import MlffcError
from mlffc.targets.backends.aoti import AotInductor
from mlffc.targets.backends.base import Backend, Payload
from mlffc.targets.backends.onnxruntime import OnnxRuntime
from mlffc.targets.backends.tensorrt import TensorRT
from mlffc.targets.backends.tvm import Tvm

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (AotInductor(), OnnxRuntime(), Tvm(), TensorRT())}


def get_backend(name: str) -> Backend:
    """The backend, or a clear error when it is unknown or its package is not installed."""
    if name not in BACKENDS:
        raise MlffcError(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    missing = backend.unavailable_reason()
    if missing:
        raise MlffcError(f"backend '{name}' cannot run here: {missing}")
    return backend


__all__ = ["BACKENDS", "Backend", "Payload", "get_backend"]
