"""`mlffc compile`: student -> captured graph -> passes -> backend -> acceptance check -> artifact.

The artifact is a directory written atomically: the backend's payload, the student checkpoint it
came from, and manifest.json (target, versions, species, units, accuracy against the eager student
and the teacher, speed). The compiled model must agree with the eager student before anything is
written (the acceptance check, as in nequip's compile).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import mlffc
from mlffc.capture import OUTPUTS, example_graph, export, trace
from mlffc.data.clusters import molecular_cluster
from mlffc.data.loader import GraphDataset
from mlffc.data.storage import read_dataset
from mlffc.errors import MlffcError
from mlffc.graph import GRAPH_INPUTS, build_graph
from mlffc.io import atomic_directory, write_json
from mlffc.metrics import error_metrics
from mlffc.passes import PassSettings, run_passes
from mlffc.progress import console
from mlffc.runtime.manifest import MANIFEST, SCHEMA_VERSION, host_description, sha256_file
from mlffc.runtime.model import CompiledModel, load
from mlffc.students import Student, load_student
from mlffc.targets import Target, get_target
from mlffc.targets.backends import get_backend
from mlffc.timing import median_ms
from mlffc.units import UNITS

STUDENT_FILE = "student.safetensors"
# Compiled-vs-eager tolerance per precision: max |dE| per atom (eV) and max |dF| (eV/Å).
TOLERANCE = {"fp32": {"energy_per_atom": 1e-4, "forces": 2e-3}}
SPEED_SYSTEM = ("H2O", 100)  # ~300-atom water cluster


def resolve_target(name: str, backend: str | None = None, threads: int | None = None) -> Target:
    target = get_target(name)
    if backend is not None:
        if backend not in target.backends:
            raise MlffcError(f"target {name} supports backends {', '.join(target.backends)}, not '{backend}'")
        target = replace(target, backend=backend)
    if threads is not None:
        target = replace(target, threads=threads)
    return target


def plan(target: Target) -> list[str]:
    """The steps compile would run, in words (`mlffc compile --plan`)."""
    return [
        "trace energy+forces+stress with make_fx (symbolic sizes)",
        *[f"pass {name}" for name in target.passes],
        "torch.export with dynamic atoms, edges, structures",
        f"lower with backend {target.backend} for {target.device}"
        + (f" {target.arch}" if target.arch else f", {target.threads} thread(s)"),
        f"acceptance: compiled vs eager within {TOLERANCE[target.precision]}",
        "accuracy vs teacher on the test split; speed at ~300 atoms",
        "write manifest.json + payload atomically",
    ]


def compile_student(student_path: Path, target: Target, out: Path, data: Path | None = None) -> dict:
    if target.device == "cuda" and not torch.cuda.is_available():
        raise MlffcError(
            f"target {target.name} needs its GPU ({target.arch}) at compile time (AOTInductor specialises to the device) "
            f"and none is visible; run on that GPU, or use --plan to see the pipeline"
        )
    backend = get_backend(target.backend)
    student, meta = load_student(student_path)
    frames = read_dataset(data).split_named("test") if data else None
    example = example_graph(student)
    started = time.perf_counter()
    with console.status(f"compiling for {target.name} with {backend.name}"):
        graph_module = run_passes(trace(student, example), target.passes, PassSettings(target.device, target.precision))
        exported = export(graph_module, example)
        with atomic_directory(out) as tmp:
            payload = backend.lower(exported, target, tmp)
            shutil.copyfile(student_path, tmp / STUDENT_FILE)
            manifest = _manifest(student, meta, target, payload, tmp)
            write_json(tmp / MANIFEST, manifest)
            compiled = load(tmp)
            manifest["accuracy"] = {"vs_eager": acceptance(compiled, student, frames, target)}
            if frames is not None and len(frames):
                manifest["accuracy"]["vs_teacher"] = {"split": "test", "frames": len(frames), **evaluate_compiled(compiled, frames)}
            manifest["speed"] = measure_speed(compiled, student)
            manifest["compile_seconds"] = time.perf_counter() - started
            write_json(tmp / MANIFEST, manifest)
    return manifest


def _manifest(student: Student, meta: dict, target: Target, payload: list[Path], directory: Path) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlffc": mlffc.__version__,
        "target": target.as_dict(),
        "backend": {"name": target.backend, "entry": payload[0].name, "torch": torch.__version__},
        "built_on": host_description(),
        "precision": target.precision,
        "passes": list(target.passes),
        "payload": {p.name: sha256_file(p) for p in payload},
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
        "capabilities": {"periodic": True, "stress": True},
    }


def compare_with_eager(compiled: CompiledModel, student: Student, graphs) -> dict[str, float]:
    """Worst |compiled - eager| over the graphs: energy per atom (eV) and force components (eV/Å)."""
    worst = {"energy_per_atom": 0.0, "forces": 0.0}
    for graph in graphs:
        energy, forces, _ = compiled.run(graph)
        energy_ref, forces_ref, _ = student(*graph.inputs())
        natoms = torch.bincount(graph.batch, minlength=graph.num_structures).to(torch.float64)
        worst["energy_per_atom"] = max(worst["energy_per_atom"], float(((energy.cpu() - energy_ref.detach()) / natoms).abs().max()))
        worst["forces"] = max(worst["forces"], float((forces.cpu() - forces_ref.detach()).abs().max()))
    return worst


def frame_graphs(frames, cutoff: float, max_atoms: int = 4096):
    dataset = GraphDataset(frames, cutoff)
    return [dataset.batch(indices).graph for indices in dataset.batches(max_atoms)]


def acceptance(compiled: CompiledModel, student: Student, frames, target: Target) -> dict:
    """Compiled vs eager on a fresh example and the test frames; refuse beyond tolerance."""
    graphs = [example_graph(student, sizes=(3, 17, 5), seed=1)]
    if frames is not None and len(frames):
        graphs += frame_graphs(frames, student.cutoff)
    worst = compare_with_eager(compiled, student, graphs)
    tolerance = TOLERANCE[target.precision]
    if any(worst[k] > tolerance[k] for k in worst):
        raise MlffcError(f"compiled model disagrees with the eager student ({worst}, tolerance {tolerance}); artifact not written")
    return {"max_abs_energy_per_atom": worst["energy_per_atom"], "max_abs_forces": worst["forces"], "tolerance": tolerance}


def predict_compiled(compiled: CompiledModel, frames) -> tuple[np.ndarray, np.ndarray]:
    """Compiled predictions in frame order: energy [B], forces [N, 3]."""
    outputs = [compiled.run(graph) for graph in frame_graphs(frames, compiled.cutoff)]
    return np.concatenate([o[0].cpu().numpy() for o in outputs]), np.concatenate([o[1].cpu().numpy() for o in outputs])


def evaluate_compiled(compiled: CompiledModel, frames) -> dict:
    energy, forces = predict_compiled(compiled, frames)
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
