"""Teachers by name: `ani1x` (bundled), `fennol:PATH.fnx[,PATH2.fnx...]` for any FeNNol model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

from mlffc.errors import MlffcError
from mlffc.teachers.base import Teacher

_BUNDLED = resources.files("mlffc.teachers") / "assets"


def bundled_ani1x() -> list[Path]:
    return sorted(Path(str(_BUNDLED / "ani1x")).glob("ani1x_model*.fnx"))


def _ani1x() -> Teacher:
    from mlffc.teachers.fennol import FennolTeacher

    return FennolTeacher(bundled_ani1x(), name="ani1x")


TEACHERS: dict[str, tuple[Callable[[], Teacher], str]] = {
    "ani1x": (_ani1x, "ANI-1x, 8-network ensemble (FeNNol-PMC, MIT), wB97X/6-31G(d), H C N O; bundled"),
}


def available_teachers() -> dict[str, str]:
    return {name: description for name, (_, description) in TEACHERS.items()}


def load_teacher(spec: str) -> Teacher:
    """A teacher from a registry name or `fennol:PATH[,PATH...]`."""
    if spec.startswith("fennol:"):
        from mlffc.teachers.fennol import FennolTeacher

        paths = [p for p in spec.removeprefix("fennol:").split(",") if p]
        return FennolTeacher(paths, name=spec)
    if spec not in TEACHERS:
        raise MlffcError(f"unknown teacher '{spec}'; available: {', '.join(TEACHERS)} or fennol:PATH.fnx")
    return TEACHERS[spec][0]()
