"""Compile targets and the backends that lower to them (mapped to `mlffc.targets`)."""

from mlffc.targets.registry import TARGETS, Target, get_target, register_target

__all__ = ["TARGETS", "Target", "get_target", "register_target"]
