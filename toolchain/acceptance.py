"""Compile's checks of a lowered artifact: the calibration set passes are judged on, the
acceptance of compiled against eager (tolerance of lowering plus the budgets of lossy passes),
accuracy against the teacher, and speed. Differences are metrics.worst_difference."""

from __future__ import annotations

import copy

import torch

from mlffc.capture import example_graph
from mlffc.data.clusters import molecular_cluster
from mlffc.data.loader import GraphDataset
from mlffc.errors import MlffcError
from mlffc.graph import BATCH_ATOMS, build_graph
from mlffc.metrics import error_metrics, frame_graphs, predict
from mlffc.passes import Calibration
from mlffc.passes.core import EXACT
from mlffc.runtime.model import CompiledModel
from mlffc.students import Student
from mlffc.timing import median_ms

# Compiled-vs-eager tolerance of lowering alone (reordered fp32 arithmetic): max |dE| per atom (eV)
# and max |dF| (eV/Å, relative above metrics.FORCE_SCALE), raised to twice the student's own
# float32 rounding where that is larger; lossy passes add their budgets to it (`acceptance_tolerance`).
TOLERANCE = {"energy_per_atom": 1e-4, "forces": 2e-3}
SPEED_SYSTEM = ("H2O", 100)  # ~300-atom water cluster


def calibration_set(student: Student, frames) -> Calibration:
    """A fresh example batch and the validation frames (with the teacher's labels), timed on ~300
    atoms: passes are accepted or rejected on it, so it is never the test split."""
    graphs, labels = [example_graph(student, sizes=(3, 17, 5), seed=1)], [None]
    if frames is not None and len(frames):
        dataset = GraphDataset(frames, student.cutoff)
        batches = [dataset.batch(indices) for indices in dataset.batches(BATCH_ATOMS)]
        graphs += [b.graph for b in batches]
        labels += [(b.energy.numpy(), b.forces.double().numpy()) for b in batches]
    return Calibration(graphs, labels, timing=build_graph([speed_system()], student.cutoff))


def acceptance_tolerance(records: list[dict], rounding: dict[str, float]) -> dict[str, float]:
    """Lowering's own tolerance (at least twice the student's float32 rounding) plus the budgets
    of the applied passes that change results. Budgets are absolute (eV/Å) and the acceptance
    measure is relative above FORCE_SCALE; |dF| / max(1, |F|) <= |dF|, so an absolute budget bounds
    the relative measure too, and the sum bounds the compiled-vs-eager difference."""
    lossy = [r["budget"] for r in records if r["applied"] and r.get("budget") not in (None, vars(EXACT))]
    return {k: max(TOLERANCE[k], 2 * rounding[k]) + sum(b[k] for b in lossy) for k in TOLERANCE}


def float32_rounding(student: Student, calibration: Calibration, eager: list) -> dict[str, float]:
    """Worst difference of the eager student's float32 outputs on the calibration graphs
    (`eager`) from the student in float64: the rounding floor under any float32 lowering (larger
    for deeper message passing)."""
    reference = copy.deepcopy(student).double()

    def in_float64(graph):
        return reference(*(x.double() if x.is_floating_point() else x for x in graph.inputs()))

    return calibration.difference(eager, calibration.run(in_float64))


def acceptance(compiled: CompiledModel, calibration: Calibration, eager: list, tolerance: dict) -> dict:
    """Compiled vs the eager outputs on the calibration graphs; refuse beyond tolerance."""
    worst = calibration.difference(calibration.run(compiled.run), eager)
    if not all(worst[k] <= tolerance[k] for k in worst):
        raise MlffcError(f"compiled model disagrees with the eager student ({worst}, tolerance {tolerance}); artifact not written")
    return {"max_abs_energy_per_atom": worst["energy_per_atom"], "max_forces_error": worst["forces"], "tolerance": tolerance}


def evaluate_compiled(compiled: CompiledModel, frames) -> dict:
    energy, forces, _ = predict(compiled.run, frame_graphs(GraphDataset(frames, compiled.cutoff)))
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
