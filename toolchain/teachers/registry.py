"""Teachers by name: the bundled ANI ensembles, `fennol:PATH.fnx[,PATH...]` for any FeNNol model,
and every named Orb model (weights from the user's checkpoint, or seeded random for tests).
Listing builds nothing: `available_teachers` reads static descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mlffc.errors import MlffcError
from mlffc.teachers import orb
from mlffc.teachers.base import Capabilities, Teacher

_BUNDLED = resources.files("mlffc.teachers") / "assets"
FENNOL_PREFIX = "fennol:"
ANI_ELEMENTS = "H C N O"
ANI_CAPABILITIES = Capabilities(stress=True, periodic=True, uncertainty=True, hessian=True, atomic_energies=True)
BUNDLED = {  # name: description; 8 FeNNol .fnx networks each, from FeNNol-PMC (MIT), converted from TorchANI
    "ani1x": "ANI-1x, 8-network ensemble, wB97X/6-31G(d); organic molecules",
    "ani1ccx": "ANI-1ccx, 8-network ensemble, CCSD(T)*/CBS by transfer learning from ANI-1x; organic molecules",
}


@dataclass(frozen=True)
class TeacherEntry:
    """One row of `mlffc teachers`."""

    name: str
    family: str
    elements: str
    cutoff: float | None  # Å; None: read from the model file
    capabilities: Capabilities | None  # None: read from the model file
    weights: str
    description: str


def bundled_files(name: str) -> list[Path]:
    return sorted(Path(str(_BUNDLED / name)).glob(f"{name}_model*.fnx"))


def available_teachers() -> list[TeacherEntry]:
    entries = [
        TeacherEntry(name, "fennol", ANI_ELEMENTS, 5.2, ANI_CAPABILITIES, "bundled", description)
        for name, description in BUNDLED.items()
    ]
    entries.append(TeacherEntry(f"{FENNOL_PREFIX}PATH.fnx[,PATH...]", "fennol", "from the file", None, None,
                                "the files", "any FeNNol model; several files: an ensemble of one architecture"))
    for name, model in orb.MODELS.items():
        description = f"{model.trained_on}; max {model.max_neighbours} neighbours"
        entries.append(TeacherEntry(name, f"orb-{model.architecture}", "Z 1-117", orb.CUTOFF,
                                    orb.capabilities(model), "needs file", description))
    return entries


def load_teacher(spec: str, precision: str | None = None, weights: str | Path | None = None,
                 random_init: int | None = None) -> Teacher:
    """A teacher from a registry name or `fennol:PATH[,PATH...]`. `precision` is float32 or
    float64 (default: float64 for FeNNol, float32 for Orb); `weights` and `random_init` are for
    Orb models, whose checkpoints are not bundled."""
    if spec in orb.MODELS:
        return orb.OrbTeacher(spec, weights=weights, random_init=random_init, precision=precision or "float32")
    if spec in orb.DEPRECATED:
        raise MlffcError(f"teacher '{spec}' is deprecated upstream and orb-models cannot build it; use orb-v2 or an orb-v3 model")
    is_fennol = spec in BUNDLED or spec.startswith(FENNOL_PREFIX)
    if not is_fennol:
        raise MlffcError(f"unknown teacher '{spec}'; available: {', '.join(BUNDLED)}, {', '.join(orb.MODELS)} "
                         f"or {FENNOL_PREFIX}PATH.fnx (mlffc teachers lists them)")
    if weights is not None or random_init is not None:
        raise MlffcError(f"teacher '{spec}': weights and random-init are for Orb models; a FeNNol model is its .fnx "
                         f"file(s): use {FENNOL_PREFIX}PATH.fnx")
    from mlffc.teachers.fennol import FennolTeacher

    paths = bundled_files(spec) if spec in BUNDLED else [p for p in spec.removeprefix(FENNOL_PREFIX).split(",") if p]
    return FennolTeacher(paths, name=spec, precision=precision or "float64")
