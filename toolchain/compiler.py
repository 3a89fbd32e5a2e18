"""`mlffc compile`: student -> energy graph -> passes (each checked) -> joint graph -> backend ->
acceptance check -> artifact.

The artifact is a directory written atomically: the backend's payload (and the op library it
calls, if any), the student checkpoint it came from, and manifest.json (target, backend and its
versions, passes with their measured effects, species, units, accuracy against the eager student
and the teacher, speed). The compiled model must agree with the eager student within the
tolerance of its precision and passes before anything is written (the acceptance check, as in
nequip's compile).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import mlffc
from mlffc.capture import OUTPUTS, SIGNATURE, example_graph, export
from mlffc.data.clusters import molecular_cluster
from mlffc.data.loader import GraphDataset
from mlffc.data.storage import read_dataset
from mlffc.errors import MlffcError
from mlffc.graph import GRAPH_INPUTS, build_graph
from mlffc.io import atomic_directory, write_json
from mlffc.metrics import error_metrics
from mlffc.passes import ENERGY_PASSES, JOINT_PASSES, Budget, Calibration, PassSettings, needs_custom_ops, optimize
from mlffc.passes.core import EXACT, PRECISIONS
from mlffc.passes.manager import check_pass_names
from mlffc.progress import console
from mlffc.runtime.manifest import MANIFEST, SCHEMA_VERSION, host_description, sha256_file
from mlffc.runtime.model import CompiledModel, load
from mlffc.students import Student, load_student
from mlffc.targets import Target, get_target
from mlffc.targets.backends import BACKENDS, Payload, get_backend
from mlffc.timing import median_ms
from mlffc.units import UNITS

STUDENT_FILE = "student.safetensors"
# Compiled-vs-eager tolerance of lowering alone (reordered fp32 arithmetic): max |dE| per atom (eV)
# and max |dF| (eV/Å, relative above 1 eV/Å), raised to twice the student's own float32 rounding
# where that is larger; lossy passes add their budgets to it (`acceptance_tolerance`).
TOLERANCE = {"energy_per_atom": 1e-4, "forces": 2e-3}
SPEED_SYSTEM = ("H2O", 100)  # ~300-atom water cluster


def resolve_target(name: str, backend: str | None = None, threads: int | None = None, passes: list[str] | None = None,
                   precision: str | None = None) -> Target:
    """The named target with overrides. A backend that cannot run the mlffc op library drops the
    target's default passes that need it; passes named explicitly must suit the backend."""
    target = get_target(name)
    if backend is not None:
        if backend not in target.backends:
            raise MlffcError(f"target {name} supports backends {', '.join(target.backends)}, not '{backend}'")
        runs_ops = BACKENDS[backend].custom_ops
        target = replace(target, backend=backend, passes=tuple(p for p in target.passes if runs_ops or p not in needs_custom_ops(target.passes)))
    if passes is not None:
        check_pass_names(passes)
        unsuitable = needs_custom_ops(passes) if not BACKENDS[target.backend].custom_ops else []
        if unsuitable:
            raise MlffcError(f"passes {', '.join(unsuitable)} make graphs that call the mlffc op library, which backend "
                             f"{target.backend} cannot run; use --backend aoti or leave them out")
        target = replace(target, passes=tuple(passes))
    required = [p for p in BACKENDS[target.backend].required_passes if p not in target.passes]
    target = replace(target, passes=(*target.passes, *required))
    if precision is not None:
        if precision not in PRECISIONS:
            raise MlffcError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
        target = replace(target, precision=precision)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise MlffcError(f"threads must be an integer >= 1, got {threads!r}")
        target = replace(target, threads=threads)
    return target


def pass_settings(target: Target) -> PassSettings:
    """The target's pass settings; its settings dict may set accumulation, layers (per-layer
    precision) and budgets (pass name -> {energy_per_atom, forces, teacher_force_mae})."""
    budgets = {name: Budget(**budget) for name, budget in target.settings.get("budgets", {}).items()}
    return PassSettings(device=target.device, precision=target.precision, accumulation=target.settings.get("accumulation", "fp64"),
                        layers=target.settings.get("layers", {}), budgets=budgets)


def plan(target: Target) -> list[str]:
    """The steps compile would run, in words (`mlffc compile --plan`)."""
    energy = [p.__name__ for p in ENERGY_PASSES if p.__name__ in target.passes]
    joint = [p.__name__ for p in JOINT_PASSES if p.__name__ in target.passes]
    return [
        "trace the energy of edge vectors with make_fx (symbolic sizes)",
        *[f"pass {name} (energy graph; checked against its error budget on the calibration set)" for name in energy],
        "differentiate: trace energy -> forces + stress (the backward as explicit ops)",
        *[f"pass {name} (joint graph; checked)" for name in joint],
        "torch.export with dynamic atoms, edges, structures",
        f"lower with backend {target.backend} for {target.device}"
        + (f" {target.arch}" if target.arch else f", {target.threads} thread(s)") + f", precision {target.precision}",
        f"acceptance: compiled vs eager within {TOLERANCE} plus the budgets of lossy passes",
        "accuracy vs teacher on the test split (passes calibrate on the validation split); speed at ~300 atoms",
        "write manifest.json + payload atomically",
    ]


def compile_student(student_path: Path, target: Target, out: Path, data: Path | None = None) -> dict:
    if target.device == "cuda" and not torch.cuda.is_available():
        raise MlffcError(
            f"target {target.name} needs its GPU ({target.arch}) at compile time (AOTInductor specialises to the device) "
            f"and none is visible; run on that GPU, or use --plan to see the pipeline"
        )
    backend = get_backend(target.backend)
    if target.device not in backend.devices:
        raise MlffcError(f"backend {backend.name} lowers for {', '.join(backend.devices)}, not for {target.device} (target {target.name})")
    check_destination(Path(out), [Path(student_path)] + ([Path(data)] if data else []))
    student, meta = load_student(student_path)
    check_finite_weights(student, student_path)
    dataset = read_dataset(data) if data else None
    frames = dataset.split_named("test") if dataset else None  # reported only: nothing is chosen on it
    example = example_graph(student)
    calibration = calibration_set(student, dataset.split_named("val") if dataset else None)
    started = time.perf_counter()
    with console.status(f"compiling for {target.name} with {backend.name}"):
        graph_module, records = optimize(student, example, target.passes, pass_settings(target), calibration)
        for record in records:
            if not record["applied"]:
                console.print(f"[yellow]pass {record['name']} rejected[/]: {record['rejected']}")
        exported = export(graph_module, example)
        with atomic_directory(out, may_replace=replaceable_artifact) as tmp:
            payload = backend.lower(exported, target, tmp)
            shutil.copyfile(student_path, tmp / STUDENT_FILE)
            manifest = _manifest(student, meta, target, backend, payload, records, tmp)
            write_json(tmp / MANIFEST, manifest)
            compiled = load(tmp)
            eager = [student(*g.inputs())[:2] for g in calibration.graphs]  # once, for both comparisons
            rounding = float32_rounding(student, calibration.graphs, eager)
            manifest["accuracy"] = {"vs_eager": {**acceptance(compiled, eager, calibration.graphs, acceptance_tolerance(records, rounding)),
                                                 "float32_rounding": rounding}}
            if frames is not None and len(frames):
                manifest["accuracy"]["vs_teacher"] = {"split": "test", "frames": len(frames), **evaluate_compiled(compiled, frames)}
            manifest["speed"] = measure_speed(compiled, student)
            manifest["compile_seconds"] = time.perf_counter() - started
            write_json(tmp / MANIFEST, manifest)
    return manifest


def check_destination(out: Path, inputs: list[Path]) -> None:
    """Refuse, before any work, an --out that compile must not replace: a file, the working
    directory or one above it, a directory holding an input, or a non-empty directory that is not
    an earlier artifact (replaceable_artifact)."""
    if out.exists() and not out.is_dir():
        raise MlffcError(f"--out {out} is a file; compile writes an artifact directory: choose a directory")
    target = out.resolve()
    for protected, what in [(Path.cwd().resolve(), "the working directory"), *((p.resolve(), f"the input {p}") for p in inputs)]:
        if target == protected or target in protected.parents:
            raise MlffcError(f"--out {out} would replace {what} (or a directory holding it): choose a new directory")
    if out.is_dir() and any(out.iterdir()):
        replaceable_artifact(out)


def replaceable_artifact(path: Path) -> None:
    """Return when `path` is an earlier mlffc artifact and holds nothing its manifest does not
    name (so replacing it loses nothing else); otherwise MlffcError saying what is in the way."""
    advice = "choose another --out, or empty it yourself"
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        names = {MANIFEST, *manifest["payload"], manifest["model"]["checkpoint"]["file"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MlffcError(f"--out {path} holds files and is not an earlier mlffc artifact (no readable {MANIFEST}: "
                         f"{type(exc).__name__}); compile replaces only its own artifacts: {advice}") from None
    foreign = sorted(p.name for p in path.iterdir() if p.name not in names)
    if foreign:
        raise MlffcError(f"--out {path} is an earlier artifact but also holds {', '.join(foreign[:5])}"
                         f"{' ...' if len(foreign) > 5 else ''}, which compile did not make: {advice}")


def check_finite_weights(student: Student, path: Path) -> None:
    """Refuse a student with a NaN or infinite parameter or buffer: it would compile, and compare
    equal to its own NaN outputs."""
    for name, tensor in student.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MlffcError(f"{path}: student weight {name} holds {int((~torch.isfinite(tensor)).sum())} NaN or infinite "
                             f"values (a diverged training?); retrain it")


def calibration_set(student: Student, frames) -> Calibration:
    """A fresh example batch and the validation frames (with the teacher's labels), timed on ~300
    atoms: passes are accepted or rejected on it, so it is never the test split."""
    graphs, labels = [example_graph(student, sizes=(3, 17, 5), seed=1)], [None]
    if frames is not None and len(frames):
        dataset = GraphDataset(frames, student.cutoff)
        batches = [dataset.batch(indices) for indices in dataset.batches(4096)]
        graphs += [b.graph for b in batches]
        labels += [(b.energy.numpy(), b.forces.double().numpy()) for b in batches]
    return Calibration(graphs, labels, timing=build_graph([speed_system()], student.cutoff))


def acceptance_tolerance(records: list[dict], rounding: dict[str, float]) -> dict[str, float]:
    """Lowering's own tolerance (at least twice the student's float32 rounding) plus the budgets
    of the applied passes that change results."""
    lossy = [r["budget"] for r in records if r["applied"] and r.get("budget") not in (None, vars(EXACT))]
    return {k: max(TOLERANCE[k], 2 * rounding[k]) + sum(b[k] for b in lossy) for k in TOLERANCE}


def _manifest(student: Student, meta: dict, target: Target, backend, payload: Payload, records: list[dict], directory: Path) -> dict:
    host = host_description()
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlffc": mlffc.__version__,
        "target": target.as_dict(),
        "backend": {
            "name": backend.name,
            "entry": payload.entry.name,
            "libraries": [p.name for p in payload.libraries],
            "versions": backend.versions(),
            "facts": payload.facts,
            "torch": torch.__version__,
        },
        "built_on": host,
        "device": {"kind": target.device, "arch": target.arch if target.device == "cuda" else host["cpu_capability"],
                   "name": host.get("gpu") if target.device == "cuda" else host["machine"]},
        "precision": target.precision,
        "passes": records,
        "payload": {p.name: sha256_file(p) for p in payload.files},
        "model": {
            "architecture": student.name,
            "config": student.config(),
            "parameters": sum(p.numel() for p in student.parameters()),
            "species": student.species,
            "cutoff": student.cutoff,
            "checkpoint": {"file": STUDENT_FILE, "sha256": sha256_file(directory / STUDENT_FILE)},
            "teacher": meta.get("teacher"),
        },
        "units": UNITS,
        "inputs": list(GRAPH_INPUTS),
        "outputs": list(OUTPUTS),
        "signature": SIGNATURE,
        "capabilities": {"periodic": True, "stress": True},
    }


def compare_with_eager(compiled: CompiledModel, student: Student, graphs) -> dict[str, float]:
    """Worst compiled-vs-eager difference over the graphs (see worst_difference)."""
    return worst_difference(((compiled.run(g)[:2], student(*g.inputs())[:2], g) for g in graphs))


def float32_rounding(student: Student, graphs, eager: list) -> dict[str, float]:
    """Worst difference of the eager student's float32 outputs on the graphs (`eager`) from the
    student in float64: the rounding floor under any float32 lowering (larger for deeper
    message passing)."""
    reference = copy.deepcopy(student).double()

    def in_float64(graph):
        return tuple(x.double() if x.is_floating_point() else x for x in graph.inputs())

    return worst_difference(((outputs, reference(*in_float64(g))[:2], g) for outputs, g in zip(eager, graphs)))


def worst_difference(results) -> dict[str, float]:
    """Over (energy, forces), (reference energy, reference forces), graph triples: worst |dE| per
    atom (eV), and for force components |dF| / max(1, |F| / 1 eV/Å): absolute (eV/Å) below
    1 eV/Å, relative above, since float32 rounding grows with the force."""
    worst = {"energy_per_atom": 0.0, "forces": 0.0}
    for (energy, forces), (energy_ref, forces_ref), graph in results:
        energy, forces = energy.detach().cpu().double(), forces.detach().cpu().double()
        energy_ref, forces_ref = energy_ref.detach().double(), forces_ref.detach().double()
        natoms = torch.bincount(graph.batch, minlength=graph.num_structures).to(torch.float64)
        scaled = (forces - forces_ref).abs() / forces_ref.abs().clamp(min=1.0)
        for key, difference in (("energy_per_atom", ((energy - energy_ref) / natoms).abs()), ("forces", scaled)):
            # NaN propagates (Python's max() would drop it: NaN compares false)
            worst[key] = float(torch.cat([difference.flatten(), torch.tensor([worst[key]], dtype=torch.float64)]).max())
    return worst


def frame_graphs(frames, cutoff: float, max_atoms: int = 4096):
    dataset = GraphDataset(frames, cutoff)
    return [dataset.batch(indices).graph for indices in dataset.batches(max_atoms)]


def acceptance(compiled: CompiledModel, eager: list, graphs, tolerance: dict) -> dict:
    """Compiled vs the eager outputs on the calibration graphs; refuse beyond tolerance."""
    worst = worst_difference(((compiled.run(g)[:2], outputs, g) for outputs, g in zip(eager, graphs)))
    if not all(worst[k] <= tolerance[k] for k in worst):  # NaN fails
        raise MlffcError(f"compiled model disagrees with the eager student ({worst}, tolerance {tolerance}); artifact not written")
    return {"max_abs_energy_per_atom": worst["energy_per_atom"], "max_forces_error": worst["forces"], "tolerance": tolerance}


def predict_compiled(compiled: CompiledModel, frames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compiled predictions in frame order: energy [B], forces [N, 3], stress [B, 3, 3]."""
    outputs = [compiled.run(graph) for graph in frame_graphs(frames, compiled.cutoff)]
    return tuple(np.concatenate([o[k].cpu().numpy() for o in outputs]) for k in range(3))


def evaluate_compiled(compiled: CompiledModel, frames) -> dict:
    energy, forces, _ = predict_compiled(compiled, frames)
    return error_metrics(energy, frames.energy, frames.natoms, forces, frames.forces)


def speed_system():
    return molecular_cluster(SPEED_SYSTEM[0], SPEED_SYSTEM[1])


def measure_speed(compiled: CompiledModel, student: Student) -> dict:
    """Energy+forces of the ~300-atom water cluster: compiled vs eager, neighbour list excluded."""
    system = speed_system()
    graph = build_graph([system], student.cutoff)
    compiled_ms = median_ms(lambda: compiled.run(graph))
    eager_ms = median_ms(lambda: student(*graph.inputs()))
    return {
        "system": f"{SPEED_SYSTEM[1]}-molecule {SPEED_SYSTEM[0]} cluster",
        "atoms": len(system),
        "edges": int(graph.edge_index.shape[1]),
        "threads": torch.get_num_threads(),
        "compiled_ms": compiled_ms,
        "eager_ms": eager_ms,
        "speedup_vs_eager": eager_ms / compiled_ms,
    }
