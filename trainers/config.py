"""Training settings: one dataclass, read from and written back to YAML."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlffc.errors import MlffcError
from mlffc.io import atomic_path

LOSSES = ("mse", "huber")
SCHEDULES = ("cosine", "plateau")


@dataclass
class TrainConfig:
    data: str = ""
    architecture: str = "moment"
    student: dict = field(default_factory=dict)  # architecture arguments (cutoff, channels, ...)
    epochs: int = 60
    max_atoms_per_batch: int = 256  # global batch, split over data-parallel processes
    # processes building the next batches while one trains; 0: in the training process, which with
    # cached neighbour lists waits 1.5% of a step on 2 cores, where a worker competes for a core (10%)
    loader_workers: int = 0
    lr: float = 3e-3
    schedule: str = "cosine"  # warm-up, then cosine decay to lr * lr_min_factor, or plateau decay on validation
    lr_min_factor: float = 0.02
    warmup_fraction: float = 0.03
    plateau_patience: int = 5  # epochs without improvement before the plateau schedule halves the rate
    weight_decay: float = 1e-6
    loss: str = "mse"  # or huber, with huber_delta in the units of each term
    huber_delta: float = 0.1
    energy_weight: float = 1.0  # on (per-atom energy error)^2, eV^2
    force_weight: float = 1.0  # on (force component error)^2, (eV/Å)^2
    stress_weight: float = 0.0  # on (stress component error)^2, (eV/Å^3)^2, frames with stress labels only
    hessian_weight: float = 0.0  # on (Hessian-vector product component error)^2, frames with Hessian labels only
    atomic_energy_weight: float = 0.0  # on (per-atom energy error)^2, eV^2, against the teacher's partition where labelled
    # a checkpoint to start from, or a bundled pretrained student's name (mlffc students): its
    # architecture, size, reference energies and feature scales win (`student` must be empty)
    init: str = ""
    grad_clip: float = 10.0
    ema_decay: float = 0.99  # exponential moving average of the weights: what is validated and saved
    early_stopping_patience: int = 0  # epochs without validation improvement before stopping; 0: never
    seed: int = 0
    threads: int = 0  # 0: torch's default
    tensorboard: bool = True

    def __post_init__(self):
        """Every setting of its field's type and range, named when not (before any work starts)."""
        for name, spec in self.__dataclass_fields__.items():
            value = getattr(self, name)
            kind = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}[str(spec.type)]
            ok = isinstance(value, bool) if kind is bool else not isinstance(value, bool) and (
                isinstance(value, kind) or (kind is float and isinstance(value, int)))
            if ok and kind is float:
                ok = math.isfinite(value) and value >= 0
            if not ok:
                what = {int: "an integer", float: "a finite number >= 0", str: "a string", bool: "true or false",
                        dict: "a mapping of settings"}[kind]
                raise MlffcError(f"training setting {name} must be {what}, got {value!r}")
        for name, least in (("epochs", 1), ("max_atoms_per_batch", 1), ("loader_workers", 0), ("plateau_patience", 0),
                            ("early_stopping_patience", 0), ("threads", 0)):
            if getattr(self, name) < least:
                raise MlffcError(f"training setting {name} must be >= {least}, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise MlffcError(f"training setting ema_decay must be in [0, 1) (0: no averaging), got {self.ema_decay}")
        for name in ("lr", "huber_delta", "grad_clip"):
            if not getattr(self, name) > 0:
                raise MlffcError(f"training setting {name} must be > 0, got {getattr(self, name)}")
        for name in ("lr_min_factor", "warmup_fraction"):
            if getattr(self, name) > 1:
                raise MlffcError(f"training setting {name} must be at most 1, got {getattr(self, name)}")
        from mlffc.students.registry import STUDENTS, check_student_settings

        if self.architecture not in STUDENTS:
            raise MlffcError(f"unknown student architecture '{self.architecture}'; available: {', '.join(STUDENTS)}")
        if "species" in self.student:
            raise MlffcError("student setting species is taken from the data; leave it out")
        check_student_settings(self.architecture, self.student)
        if self.loss not in LOSSES:
            raise MlffcError(f"loss must be one of {LOSSES}, not '{self.loss}'")
        if self.schedule not in SCHEDULES:
            raise MlffcError(f"schedule must be one of {SCHEDULES}, not '{self.schedule}'")

    @staticmethod
    def from_file(path: str | Path) -> "TrainConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MlffcError(f"training config not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MlffcError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(values, dict):
            raise MlffcError(f"{path} must hold a mapping of training settings (name: value), not a {type(values).__name__}")
        unknown = set(values) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise MlffcError(f"{path}: unknown training settings: {', '.join(sorted(unknown))}")
        return TrainConfig(**values)

    def write(self, path: str | Path) -> None:
        import yaml

        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(asdict(self), sort_keys=False))
