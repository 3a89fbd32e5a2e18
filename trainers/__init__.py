"""Distillation training (mapped to `mlffc.trainers`)."""

from mlffc.trainers.config import TrainConfig
from mlffc.trainers.distill import train

__all__ = ["TrainConfig", "train"]
