"""`mlffc check`: an artifact against the teacher's labels and against its own eager student,
and (`--md`) in short NVE/NVT simulations beside the teacher. Fails (non-zero exit) when an error
exceeds its limit, so CI can gate on it."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mlffc.data.loader import GraphDataset
from mlffc.data.exchange import import_with_references, is_dataset_path
from mlffc.data.storage import read_dataset
from mlffc.check_settings import Limits, MdLimits, MdSettings
from mlffc.errors import MlffcError
from mlffc.metrics import concatenate, error_metrics, errors_by_category, frame_graphs, run_graphs, structure_atoms, worst_difference
from mlffc.plots import parity_figure, pyplot, save_figure
from mlffc.progress import console
from mlffc.runtime import load
from mlffc.runtime.manifest import STUDENT_FILE
from mlffc.students import load_student


def check_artifact(artifact: Path, data: Path, limits: Limits, split: str = "test", plot: Path | None = None,
                   reference_keys: list[tuple[str, str]] = ()) -> dict:
    """`data` is an mlffc-dataset (its `split` is checked) or a file ase.io reads (all its frames:
    the calculator's labels are the reference, plus each (energy, forces) info/arrays key pair
    of `reference_keys`, reported apart under `vs_references`)."""
    model = load(artifact)
    if model.manifest.accuracy is None:
        raise MlffcError(f"{artifact}: its manifest has no accuracy (compile did not finish its checks); recompile the artifact")
    accepted = model.manifest.accuracy.vs_eager.tolerance
    limits = replace(limits, compiled_vs_eager_forces=_given(limits.compiled_vs_eager_forces, accepted.forces),
                     compiled_vs_eager_energy_per_atom=_given(limits.compiled_vs_eager_energy_per_atom, accepted.energy_per_atom))
    check_limits(asdict(limits))
    if is_dataset_path(data):
        if reference_keys:
            raise MlffcError("--reference-keys reads info/arrays keys of an extxyz or ASE file, not of an HDF5 dataset")
        frames, references, labels = read_dataset(data).split_named(split), {}, "teacher"
    else:
        split, labels = "all (external file)", f"labels of {Path(data).name}"
        frames, references = import_with_references([Path(data)], labels, reference_keys=tuple(reference_keys))
    if len(frames) == 0:
        raise MlffcError(f"{data} has no frames in the '{split}' split")
    missing = sorted(set(np.unique(frames.numbers).tolist()) - set(model.species))
    if missing:
        raise MlffcError(f"{data} holds elements {missing} that the artifact does not support ({model.elements})")
    graphs = frame_graphs(GraphDataset(frames, model.cutoff))
    compiled = run_graphs(model.run, graphs)
    energy, forces, stress = concatenate(compiled)
    vs_teacher = error_metrics(energy, frames.energy, frames.natoms, forces, frames.forces)
    vs_references = {name: error_metrics(energy, ref_energy, frames.natoms, forces, ref_forces)
                     for name, (ref_energy, ref_forces) in references.items()}
    by_category = errors_by_category(energy, forces, frames, stress)
    student, _ = load_student(Path(artifact) / STUDENT_FILE)
    eager = run_graphs(lambda graph: student(*graph.inputs()), graphs)
    vs_eager = worst_difference(compiled, eager, [structure_atoms(g) for g in graphs], relative_forces=True)
    measured = {
        "force_mae": vs_teacher["force_mae"],
        "energy_mae_per_atom": vs_teacher["energy_mae_per_atom"],
        "compiled_vs_eager_forces": vs_eager["forces"],
        "compiled_vs_eager_energy_per_atom": vs_eager["energy_per_atom"],
    }
    failures = [failure for k in measured if (failure := gate(k, measured[k], getattr(limits, k)))]
    failures += [f"{k} vs teacher = {v} is not finite" for k, v in vs_teacher.items() if k not in measured and not np.isfinite(v)]
    if plot is not None:
        save_figure(parity_figure(energy, forces, frames, f"{Path(artifact).name}: {len(frames)} {split} frames"), plot)
    return {
        "artifact": str(artifact),
        "data": str(data),
        "split": split,
        "labels": labels,
        "frames": len(frames),
        "atoms": int(frames.natoms.sum()),
        "vs_teacher": vs_teacher,
        "vs_references": vs_references,
        "by_category": by_category,
        "vs_eager": vs_eager,
        "limits": asdict(limits),
        "failures": failures,
        "passed": not failures,
    }


def _given(limit: float | None, default: float) -> float:
    """A user's limit when given (0.0 included), else the default."""
    return default if limit is None else limit


def check_limits(limits: dict) -> None:
    """Refuse a limit that is not a finite number >= 0, naming it."""
    for name, limit in limits.items():
        if not (isinstance(limit, (int, float)) and np.isfinite(limit) and limit >= 0):
            raise MlffcError(f"limit {name} must be a finite number >= 0, got {limit!r}")


def gate(name: str, measured: float, limit: float, unit: str = "") -> str | None:
    """The failure message when `measured` exceeds `limit`, or is not a finite number (NaN
    compares false with everything, so `measured > limit` alone would pass it); None if it passes."""
    if not np.isfinite(measured):
        return f"{name} = {measured} is not finite (limit {limit:.3g}{unit})"
    if not measured <= limit:
        return f"{name} = {measured:.3g} > {limit:.3g}{unit}"
    return None


def check_md(artifact: Path, teacher: str | None, settings: MdSettings, limits: MdLimits, plot: Path | None = None) -> dict:
    """NVE drift (a molecule, a periodic water box) and the box's O-O RDF under NVT, each with the
    artifact and with the teacher; fails when the artifact drifts more than the limit, when its run
    fails, or when its RDF strays from the teacher's."""
    from ase.build import molecule

    from mlffc.data.clusters import molecular_cluster
    from mlffc.md import nve_drift, nvt_rdf
    from mlffc.structures import check_structures
    from mlffc.teachers import load_teacher

    check_limits(asdict(limits))
    model = load(artifact)
    teacher_name = teacher or model.manifest.model.teacher_name or "ani1x"
    reference = load_teacher(teacher_name)
    try:
        gas = molecule(settings.molecule)
    except KeyError as error:
        raise MlffcError(f"unknown molecule '{settings.molecule}': use an ASE molecule name (ase.collections.g2)") from error
    box = molecular_cluster("H2O", settings.box_molecules, periodic=True)
    check_structures([gas, box], model.elements, allow_periodic=model.periodic)
    check_structures([gas, box], reference.info.elements, allow_periodic=reference.info.capabilities.periodic)
    common = {"timestep_fs": settings.timestep_fs, "temperature": settings.temperature}
    runs = {}
    for label, calculator in (("artifact", model.calculator), ("teacher", reference.calculator)):
        runs[label] = {}
        for system, run in (("nve_molecule", lambda: nve_drift(gas, calculator(), settings.nve_steps, **common)),
                            ("nve_box", lambda: nve_drift(box, calculator(), settings.nve_steps, **common)),
                            ("nvt_box", lambda: nvt_rdf(box, calculator(), settings.nvt_steps, settings.equilibration, **common))):
            with console.status(f"MD check: {system} with the {label} ({len(runs) * 3 + len(runs[label]) - 2} of 6)"):
                runs[label][system] = run()
    failures = []
    for system in ("nve_molecule", "nve_box"):
        run = runs["artifact"][system]
        if not run["stable"]:
            failures.append(f"{system}: {run['failure']}")
        elif failure := gate(f"{system} drift", run["drift_ev_per_atom_per_ps"], limits.drift, " eV/atom/ps"):
            failures.append(failure)
    rdf_error = float("inf")
    artifact_nvt, teacher_nvt = runs["artifact"]["nvt_box"], runs["teacher"]["nvt_box"]
    if not artifact_nvt["stable"]:
        failures.append(f"nvt_box: {artifact_nvt['failure']}")
    elif not teacher_nvt["stable"]:
        failures.append(f"nvt_box: the teacher's run {teacher_nvt['failure']}; no RDF to compare with")
    else:
        rdf_error = float(np.mean(np.abs(np.subtract(artifact_nvt["g"], teacher_nvt["g"]))))
        if failure := gate("O-O RDF error", rdf_error, limits.rdf_error):
            failures.append(failure)
    if plot is not None and all(runs[k]["nvt_box"]["stable"] for k in runs):
        rdf_plot(runs, plot, title=f"{Path(artifact).name} vs {teacher_name}: O-O RDF, {settings.box_molecules} H2O, NVT {settings.temperature:.0f} K")
    return {
        "artifact": str(artifact),
        "teacher": teacher_name,
        "settings": asdict(settings),
        "limits": asdict(limits),
        "runs": runs,
        "rdf_error": rdf_error,
        "failures": failures,
        "passed": not failures,
    }


def rdf_plot(runs: dict, path: Path, title: str) -> None:
    """The box's O-O radial distribution function, artifact against teacher."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, style in (("teacher", "k-"), ("artifact", "C1--")):
        ax.plot(runs[label]["nvt_box"]["r"], runs[label]["nvt_box"]["g"], style, label=label)
    ax.set(xlabel="r (Å)", ylabel="g_OO(r)", title=title)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
