"""Student architectures by name, and checkpoints: one safetensors file holding the weights and,
in its metadata, the architecture name and full config (no pickled classes)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mlffc.errors import MlffcError
from mlffc.io import atomic_path
from mlffc.students.base import Student
from mlffc.students.behler import BehlerParrinelloStudent
from mlffc.students.moment import MomentStudent
from mlffc.students.painn import PaiNNStudent

# cheapest to most expressive per edge
STUDENTS: dict[str, type[Student]] = {cls.name: cls for cls in (BehlerParrinelloStudent, MomentStudent, PaiNNStudent)}


# Pretrained students shipped in the package (students/pretrained/, recipe and errors in its README):
# a starting point to specialise to a user's molecules in minutes (train --init NAME).
PRETRAINED = {"ani1x-moment": "ani1x-moment.safetensors"}


def checkpoint_path(spec: str | Path) -> Path:
    """A checkpoint file: a bundled pretrained student's by name (PRETRAINED), or a path."""
    if str(spec) in PRETRAINED:
        from importlib import resources

        path = Path(str(resources.files("mlffc.students") / "pretrained" / PRETRAINED[str(spec)]))
        if not path.is_file():
            raise MlffcError(f"the pretrained student '{spec}' is not in this installation ({path})")
        return path
    return Path(spec)


def build_student(name: str, **config) -> Student:
    if name not in STUDENTS:
        raise MlffcError(f"unknown student architecture '{name}'; available: {', '.join(STUDENTS)}")
    check_student_settings(name, config)
    return STUDENTS[name](**config)


def check_student_settings(name: str, config: dict) -> None:
    """Refuse an architecture argument the class does not take, or a value its default's kind
    does not allow (sizes: integers >= 1, or >= 0 where the default is 0; lengths: finite > 0 Å;
    layer widths: a list of integers >= 1), naming it."""
    import inspect
    import math

    parameters = inspect.signature(STUDENTS[name].__init__).parameters
    allowed = [p for p in parameters if p != "self"]
    for key, value in config.items():
        if key not in allowed:
            raise MlffcError(f"student {name} has no setting '{key}'; its settings: {', '.join(allowed)}")
        default = parameters[key].default
        if isinstance(default, bool) or default is inspect.Parameter.empty:
            continue
        if isinstance(default, int):
            least = 0 if default == 0 else 1
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
                raise MlffcError(f"student setting {key} must be an integer >= {least}, got {value!r}")
        elif isinstance(default, float):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
                raise MlffcError(f"student setting {key} must be a finite number > 0 (Å for lengths), got {value!r}")
        elif isinstance(default, (tuple, list)):
            if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
                raise MlffcError(f"student setting {key} must be a non-empty list of integers >= 1, got {value!r}")


def save_student(student: Student, path: str | Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    metadata = {"architecture": student.name, "config": json.dumps(student.config()), "extra": json.dumps(extra or {})}
    state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise MlffcError(f"refusing to save {path}: weights {', '.join(bad[:5])} hold NaN or infinite values")
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_student(path: str | Path) -> tuple[Student, dict]:
    """The student (eval mode) and the extra metadata saved with it; `path` may name a bundled
    pretrained student (PRETRAINED)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = checkpoint_path(path)
    if not path.is_file():
        raise MlffcError(f"student checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise MlffcError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    if "architecture" not in metadata:
        raise MlffcError(f"{path} is not an mlffc student checkpoint (no architecture in its metadata)")
    student = build_student(metadata["architecture"], **json.loads(metadata["config"]))
    student.load_state_dict(state)
    return student.eval(), json.loads(metadata.get("extra", "{}"))
