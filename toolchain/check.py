"""`mlffc check`: an artifact against the teacher's labels and against its own eager student,
and (`--md`) in short NVE/NVT simulations beside the teacher. Fails (non-zero exit) when an error
exceeds its limit, so CI can gate on it; with an accuracy baseline (`--write-baseline`,
`--baseline`), also when a figure got worse than a stored check's by more than its tolerance."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import mlffc
from mlffc.data.loader import GraphDataset
from mlffc.data.exchange import import_with_references, is_dataset_path
from mlffc.data.storage import dataset_files, read_dataset
from mlffc.check_settings import Limits, MdLimits, MdSettings
from mlffc.errors import MlffcError
from mlffc.io import read_json, sha256_file, write_json
from mlffc.metrics import (BASELINE_METRICS, concatenate, error_metrics, errors_by_category, frame_graphs, run_graphs,
                           structure_atoms, worst_difference)
from mlffc.plots import parity_figure, pyplot, save_figure
from mlffc.progress import console
from mlffc.runtime import load
from mlffc.runtime.manifest import STUDENT_FILE, Manifest
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


# Accuracy baselines (docs/artifacts.md, "Accuracy baselines"): one check's figures in a JSON file,
# against which later checks of the same data are gated.
BASELINE_FORMAT = "mlffc-accuracy-baseline"
BASELINE_FORMAT_VERSION = 1
# A figure regresses when it exceeds its baseline by more than max(relative x baseline, the absolute
# floor of its unit): 5%, and never less than the floor, so that a figure near zero is not failed
# by float32 rounding (another CPU, another build of the same student).
BASELINE_RELATIVE_TOLERANCE = 0.05
BASELINE_ABSOLUTE_FLOOR = {"eV/Å": 1e-3, "eV/atom": 1e-4}


def default_tolerance() -> dict:
    """The tolerance a new baseline stores (edit the file to change it)."""
    return {"relative": BASELINE_RELATIVE_TOLERANCE,
            "absolute": {name: BASELINE_ABSOLUTE_FLOOR[unit] for name, unit in BASELINE_METRICS.items()}}


def data_source(data: Path, split: str, reference_keys=()) -> dict:
    """What a check is measured on, as a baseline records it: the SHA-256 of the data file (of a
    directory or glob of several shard files: of one 'NAME SHA-256' line per file, sorted by name),
    the split (datasets only: an ase.io file is checked whole) and the reference keys."""
    dataset = is_dataset_path(data)
    files = dataset_files(data) if dataset else [Path(data)]
    if not files[0].is_file():
        raise MlffcError(f"data not found: {data}")
    if len(files) == 1:
        digest = sha256_file(files[0])
    else:
        digest = hashlib.sha256("".join(f"{f.name} {sha256_file(f)}\n" for f in files).encode()).hexdigest()
    return {"path": str(data), "sha256": digest, "split": split if dataset else None,
            "reference_keys": [list(pair) for pair in reference_keys]}


def artifact_source(artifact: Path) -> dict:
    """The artifact a baseline was measured on, from its manifest (recorded, not compared: a
    baseline exists to gate other builds): target, backend, the mlffc that compiled it, payload and
    checkpoint hashes."""
    manifest = Manifest.read(artifact)
    return {"path": str(artifact), "target": manifest.target.name, "backend": manifest.backend.name,
            "mlffc": manifest.mlffc, "payload": dict(manifest.payload), "checkpoint_sha256": manifest.model.checkpoint.sha256}


def baseline_figures(report: dict) -> dict[str, dict[str, float]]:
    """The BASELINE_METRICS of a check_artifact report by group: 'all' (against its labels),
    'category/NAME' (each category present), 'reference/NAME' (each --reference-keys reference).
    Refuses a non-finite figure, naming it: it can neither be stored nor compared."""
    groups = {"all": report["vs_teacher"]}
    groups |= {f"category/{name}": entry for name, entry in report["by_category"].items() if name != "all"}
    groups |= {f"reference/{name}": entry for name, entry in report["vs_references"].items()}
    figures = {group: {name: float(entry[name]) for name in BASELINE_METRICS} for group, entry in groups.items()}
    bad = [f"{group} {name} = {value}" for group, entry in figures.items() for name, value in entry.items() if not np.isfinite(value)]
    if bad:
        raise MlffcError(f"the check of {report['artifact']} measured non-finite figures ({', '.join(bad)}): "
                         "nothing to store in or compare with a baseline")
    return figures


def make_baseline(report: dict, artifact: dict, data: dict, tolerance: dict | None = None) -> dict:
    """A baseline of a check_artifact report; `artifact` and `data` from artifact_source and data_source."""
    tolerance = default_tolerance() if tolerance is None else tolerance
    check_tolerance(tolerance, "the tolerance")
    return {
        "format": BASELINE_FORMAT,
        "format_version": BASELINE_FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlffc": mlffc.__version__,
        "artifact": artifact,
        "data": data | {"labels": report["labels"], "frames": report["frames"], "atoms": report["atoms"]},
        "tolerance": tolerance,
        "metrics": baseline_figures(report),
    }


def write_baseline(path: Path, baseline: dict) -> None:
    """Write atomically, refusing NaN or infinity anywhere (write_json strict)."""
    write_json(path, baseline, strict=True)


def read_baseline(path: Path) -> dict:
    """A baseline file, refused (MlffcError naming the field) unless it is one of this format
    version with finite figures >= 0 for every BASELINE_METRICS name and a valid tolerance."""
    path = Path(path)
    if not path.is_file():
        raise MlffcError(f"baseline not found: {path} (write one with `mlffc check ARTIFACT --data DATA --write-baseline {path}`)")
    baseline = read_json(path)
    if not isinstance(baseline, dict) or baseline.get("format") != BASELINE_FORMAT:
        found = baseline.get("format") if isinstance(baseline, dict) else type(baseline).__name__
        raise MlffcError(f"{path} is not an mlffc accuracy baseline (format {found!r}, expected {BASELINE_FORMAT!r}); "
                         "write one with `mlffc check --write-baseline`")
    version = baseline.get("format_version")
    if version != BASELINE_FORMAT_VERSION:
        raise MlffcError(f"baseline {path} has format version {version!r}; this mlffc reads version {BASELINE_FORMAT_VERSION}: "
                         f"rewrite it with `mlffc check --write-baseline` (an mlffc of its version compared with it)")
    data = baseline.get("data")
    if not (isinstance(data, dict) and isinstance(data.get("sha256"), str) and isinstance(data.get("reference_keys"), list)):
        raise MlffcError(f"baseline {path}: data must record the sha256, split and reference_keys it was measured on, got {data!r}")
    check_tolerance(baseline.get("tolerance"), f"baseline {path}: tolerance")
    metrics = baseline.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("all"), dict):
        raise MlffcError(f"baseline {path}: metrics must map groups ('all', 'category/NAME', ...) to figures, got {metrics!r}")
    for group, figures in metrics.items():
        if not isinstance(figures, dict) or set(figures) != set(BASELINE_METRICS):
            raise MlffcError(f"baseline {path}: metrics of {group} must be exactly {', '.join(BASELINE_METRICS)}, got {figures!r}")
        for name, value in figures.items():
            if not _non_negative(value):
                raise MlffcError(f"baseline {path}: {group} {name} must be a finite number >= 0, got {value!r}")
    return baseline


def check_tolerance(tolerance, where: str) -> None:
    """Refuse a tolerance that is not {relative, absolute: {metric: floor}} of finite numbers >= 0."""
    absolute = tolerance.get("absolute") if isinstance(tolerance, dict) else None
    if not (isinstance(absolute, dict) and set(absolute) == set(BASELINE_METRICS) and set(tolerance) == {"relative", "absolute"}):
        floors = ", ".join(f'"{name}": FLOOR' for name in BASELINE_METRICS)
        raise MlffcError(f'{where} must be {{"relative": R, "absolute": {{{floors}}}}}, got {tolerance!r}')
    for name, value in (("relative", tolerance["relative"]), *((f"absolute {n}", v) for n, v in absolute.items())):
        if not _non_negative(value):
            raise MlffcError(f"{where} {name} must be a finite number >= 0, got {value!r}")


def _non_negative(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value)) and value >= 0


def check_same_data(baseline: dict, data: dict, path: Path) -> None:
    """Refuse to compare a check with a baseline measured on other data (SHA-256), another split
    or other reference keys: its figures would not be comparable. Runs before the check."""
    stored = baseline["data"]
    for key, what in (("sha256", "data (SHA-256)"), ("split", "split"), ("reference_keys", "reference keys")):
        if stored.get(key) != data[key]:
            raise MlffcError(f"baseline {path} was measured on other {what} than this check: {stored.get(key)!r} "
                             f"({stored.get('path')}) against {data[key]!r} ({data['path']}); check the baseline's data "
                             "or write a new baseline")


def compare_with_baseline(report: dict, baseline: dict, path: Path) -> dict:
    """Each BASELINE_METRICS figure of a check_artifact report against the baseline's (read_baseline,
    after check_same_data): the allowed value (baseline + max(relative x baseline, absolute floor)),
    and a failure for each figure above it. A group present on one side only is an MlffcError."""
    measured = baseline_figures(report)
    stored, tolerance = baseline["metrics"], baseline["tolerance"]
    if set(measured) != set(stored):
        raise MlffcError(f"baseline {path} holds the groups {sorted(stored)}, this check measured {sorted(measured)}: "
                         "not the same check; write a new baseline")
    rows = []
    for group, figures in stored.items():
        for name, unit in BASELINE_METRICS.items():
            before, now = figures[name], measured[group][name]
            allowed = before + max(tolerance["relative"] * before, tolerance["absolute"][name])
            rows.append({"group": group, "metric": name, "unit": unit, "baseline": before, "measured": now,
                         "allowed": allowed, "regressed": now > allowed})
    failures = [f"{r['group']} {r['metric']} regressed: {r['measured']:.4g} {r['unit']} > {r['allowed']:.4g} allowed "
                f"(baseline {r['baseline']:.4g}, {_relative_change(r['measured'], r['baseline'])})" for r in rows if r["regressed"]]
    return {"file": str(path), "created": baseline.get("created"), "mlffc": baseline.get("mlffc"),
            "tolerance": tolerance, "rows": rows, "failures": failures}


def _relative_change(now: float, before: float) -> str:
    return f"{100 * (now - before) / before:+.1f}%" if before > 0 else f"{now - before:+.3g}"


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
