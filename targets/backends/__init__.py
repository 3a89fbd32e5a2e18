"""Backends: each turns an exported graph into payload files for one target."""

from __future__ import annotations

from mlffc.errors import MlffcError
from mlffc.targets.backends.aoti import AotInductor

BACKENDS = {backend.name: backend for backend in (AotInductor(),)}


def get_backend(name: str):
    if name not in BACKENDS:
        raise MlffcError(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    missing = backend.unavailable_reason()
    if missing:
        raise MlffcError(f"backend '{name}' cannot run here: {missing}")
    return backend
