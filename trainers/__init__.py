"""Distillation training (mapped to `mlffc.trainers`)."""

from mlffc.trainers.distill import TrainConfig, train

__all__ = ["TrainConfig", "train"]
