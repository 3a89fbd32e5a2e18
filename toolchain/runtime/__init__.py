"""Load and run compiled artifacts. Depends on torch, ase and vesin only: never on teachers,
data or trainers (tests/test_layering.py checks it)."""

from mlffc.runtime.model import CompiledModel, load

__all__ = ["CompiledModel", "load"]
