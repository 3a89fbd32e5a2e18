"""`mlffc check`: an artifact against the teacher's labels and against its own eager student.
Fails (non-zero exit) when an error exceeds its limit, so CI can gate on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mlffc.compiler import STUDENT_FILE, compare_with_eager, frame_graphs, predict_compiled
from mlffc.data.storage import read_frames
from mlffc.errors import MlffcError
from mlffc.metrics import error_metrics
from mlffc.plots import parity_figure, save_figure
from mlffc.runtime import load
from mlffc.students import load_student


@dataclass
class Limits:
    force_mae: float = 0.1  # eV/Å, against the teacher
    energy_mae_per_atom: float = 0.01  # eV/atom, against the teacher
    # eV/Å and eV/atom, max abs; None: the tolerance the artifact was accepted with (its precision and passes)
    compiled_vs_eager_forces: float | None = None
    compiled_vs_eager_energy_per_atom: float | None = None


def check_artifact(artifact: Path, data: Path, limits: Limits, split: str = "test", plot: Path | None = None) -> dict:
    model = load(artifact)
    accepted = model.manifest["accuracy"]["vs_eager"]["tolerance"]
    limits = replace(limits, compiled_vs_eager_forces=limits.compiled_vs_eager_forces or accepted["forces"],
                     compiled_vs_eager_energy_per_atom=limits.compiled_vs_eager_energy_per_atom or accepted["energy_per_atom"])
    frames = read_frames(data).split_named(split)
    if len(frames) == 0:
        raise MlffcError(f"{data} has no frames in the '{split}' split")
    missing = sorted(set(np.unique(frames.numbers).tolist()) - set(model.species))
    if missing:
        raise MlffcError(f"{data} holds elements {missing} that the artifact does not support ({model.elements})")
    energy, forces = predict_compiled(model, frames)
    vs_teacher = error_metrics(energy, frames.energy, frames.natoms, forces, frames.forces)
    student, _ = load_student(Path(artifact) / STUDENT_FILE)
    vs_eager = compare_with_eager(model, student, frame_graphs(frames, model.cutoff))
    measured = {
        "force_mae": vs_teacher["force_mae"],
        "energy_mae_per_atom": vs_teacher["energy_mae_per_atom"],
        "compiled_vs_eager_forces": vs_eager["forces"],
        "compiled_vs_eager_energy_per_atom": vs_eager["energy_per_atom"],
    }
    failures = [f"{k} = {measured[k]:.3g} > {getattr(limits, k):.3g}" for k in measured if measured[k] > getattr(limits, k)]
    if plot is not None:
        save_figure(parity_figure(energy, forces, frames, f"{Path(artifact).name}: {len(frames)} {split} frames"), plot)
    return {
        "artifact": str(artifact),
        "data": str(data),
        "split": split,
        "frames": len(frames),
        "atoms": int(frames.natoms.sum()),
        "vs_teacher": vs_teacher,
        "vs_eager": vs_eager,
        "limits": asdict(limits),
        "failures": failures,
        "passed": not failures,
    }
