"""Accuracy, in one place: error metrics against reference labels, the worst difference between
two models' outputs, and batched predictions over frames; eV and eV/Å (energies per atom).
Every comparison lets NaN through (a NaN output is a difference, never a pass)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from mlffc.graph import BATCH_ATOMS, Graph

# Forces differences are absolute (eV/Å) below FORCE_SCALE and relative above it when compared
# with relative_forces: float32 rounding grows with the force, so a fixed absolute tolerance
# would fail a correct lowering on stiff structures.
FORCE_SCALE = 1.0  # eV/Å

Outputs = Sequence[tuple]  # per batch: energy [B], forces [N, 3] (and optionally stress), arrays or tensors
Evaluate = Callable[[Graph], tuple]


def structure_atoms(graph: Graph) -> np.ndarray:
    """Atoms of each structure of a batched graph, float64 [B]."""
    return np.bincount(_numpy(graph.batch).astype(np.int64), minlength=graph.num_structures).astype(np.float64)


def worst_difference(outputs: Outputs, reference: Outputs, natoms: Sequence[np.ndarray],
                     relative_forces: bool = False) -> dict[str, float]:
    """Worst difference over batches of (energy [B], forces [N, 3]) against the reference's:
    energy_per_atom, max |dE| / atoms (eV); forces, max |dF| per component (eV/Å), or with
    relative_forces |dF| / max(1, |F_ref| / FORCE_SCALE) (absolute below FORCE_SCALE, relative above)."""
    energy, forces = [np.zeros(0)], [np.zeros(0)]
    for out, ref, n in zip(outputs, reference, natoms, strict=True):
        energy.append(np.abs((_numpy(out[0]) - _numpy(ref[0])) / n).ravel())
        difference = np.abs(_numpy(out[1]) - _numpy(ref[1]))
        if relative_forces:
            difference = difference / np.maximum(np.abs(_numpy(ref[1])) / FORCE_SCALE, 1.0)
        forces.append(difference.ravel())
    return {"energy_per_atom": float(np.concatenate(energy).max(initial=0.0)),
            "forces": float(np.concatenate(forces).max(initial=0.0))}


def frame_graphs(dataset, max_atoms: int = BATCH_ATOMS) -> list[Graph]:
    """The batched graphs of a GraphDataset, in frame order, up to `max_atoms` atoms each."""
    return [dataset.batch(indices).graph for indices in dataset.batches(max_atoms)]


def run_graphs(evaluate: Evaluate, graphs: Sequence[Graph]) -> list[tuple[np.ndarray, ...]]:
    """`evaluate` (a graph -> energy, forces, stress) on each graph, as numpy arrays."""
    return [tuple(_numpy(t) for t in evaluate(graph)) for graph in graphs]


def concatenate(outputs: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Per-batch outputs joined in frame order: energy [B], forces [N, 3], stress [B, 3, 3]."""
    return tuple(np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0])))


def predict(evaluate: Evaluate, graphs: Sequence[Graph]) -> tuple[np.ndarray, ...]:
    """Predictions over batched frame graphs, in frame order (see concatenate)."""
    return concatenate(run_graphs(evaluate, graphs))


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def error_metrics(
    energy: np.ndarray, energy_ref: np.ndarray, natoms: np.ndarray, forces: np.ndarray, forces_ref: np.ndarray
) -> dict[str, float]:
    de = (np.asarray(energy, np.float64) - np.asarray(energy_ref, np.float64)) / np.asarray(natoms, np.float64)
    df = np.asarray(forces, np.float64) - np.asarray(forces_ref, np.float64)
    return {
        "energy_mae_per_atom": float(np.abs(de).mean()),
        "energy_rmse_per_atom": float(np.sqrt((de**2).mean())),
        "force_mae": float(np.abs(df).mean()),
        "force_rmse": float(np.sqrt((df**2).mean())),
        "force_max_error": float(np.abs(df).max()) if df.size else 0.0,
    }


# The error_metrics figures an accuracy baseline records and gates (`mlffc check --baseline`,
# toolchain/check.py), with their units: the means, not force_max_error, which is one atom's error
# and too noisy to compare between runs.
BASELINE_METRICS = {"force_mae": "eV/Å", "force_rmse": "eV/Å", "energy_mae_per_atom": "eV/atom"}


# Evaluation categories of frames, from the sampler that made them (docs/data-format.md).
CATEGORIES = ("equilibrium", "hot", "rattled", "clusters", "liquids", "strained")
HOT_KELVIN = 500.0  # MD and normal-mode samples at or above this are "hot"


def category_of(sampler: str) -> str:
    """equilibrium (the relaxed seed, thermal samples below HOT_KELVIN), hot (MD or normal
    modes at HOT_KELVIN or above), rattled, clusters (packed, open), liquids (packed, periodic),
    strained (crystal cells)."""
    import re

    if sampler == "cluster":
        return "clusters"
    if sampler == "box":
        return "liquids"
    if sampler.startswith("rattle"):
        return "rattled"
    if sampler.startswith("strain"):
        return "strained"
    thermal = re.fullmatch(r"(?:.*-)?(?:md|nm)(\d+(?:\.\d+)?)K", sampler)
    if thermal:
        return "hot" if float(thermal[1]) >= HOT_KELVIN else "equilibrium"
    return "equilibrium"


def errors_by_category(energy, forces, frames, stress=None) -> dict[str, dict[str, float]]:
    """error_metrics of each category present in `frames` (and 'all'), with frame and atom
    counts; where `stress` [B, 3, 3] is given and frames carry stress labels, the relative stress
    error over the periodic frames as well (stress_relative_error)."""
    categories = [category_of(str(s)) for s in frames.sampler]
    return errors_by_label(energy, forces, frames, categories, CATEGORIES, stress)


def source_of(group: str) -> str:
    """The seed set a group comes from: the part of its name before the first '/' without a SMILES
    suffix ('drug-like.smi/123' -> 'drug-like'; 'bulk/Cu' -> 'bulk'), or the whole name."""
    source = group.split("/", 1)[0]
    for suffix in (".smi", ".smiles"):
        source = source.removesuffix(suffix)
    return source


def errors_by_source(energy, forces, frames, stress=None) -> dict[str, dict[str, float]]:
    """error_metrics per seed set (source_of each frame's group) and 'all', like errors_by_category:
    whether a student trained on several sets is as good on each as one trained on it alone."""
    sources = [source_of(str(g)) for g in frames.group]
    return errors_by_label(energy, forces, frames, sources, sorted(set(sources)), stress)


def errors_by_label(energy, forces, frames, labels, names, stress=None) -> dict[str, dict[str, float]]:
    """error_metrics over all frames and over the frames of each label in `names` that is present."""
    energy, forces = np.asarray(energy), np.asarray(forces)
    labels = np.asarray(labels, dtype=object)
    offsets = frames.offsets
    atom_label = np.repeat(labels, frames.natoms)
    report = {}
    for name in ("all", *names):
        frame_mask = np.ones(len(frames), bool) if name == "all" else labels == name
        if not frame_mask.any():
            continue
        atom_mask = np.ones(offsets[-1], bool) if name == "all" else atom_label == name
        entry = error_metrics(energy[frame_mask], frames.energy[frame_mask], frames.natoms[frame_mask],
                              forces[atom_mask], frames.forces[atom_mask])
        entry.update(frames=int(frame_mask.sum()), atoms=int(atom_mask.sum()))
        periodic = frame_mask & frames.pbc.all(axis=1)
        if stress is not None and frames.stress is not None and periodic.any():
            entry["stress_relative_error"] = stress_relative_error(np.asarray(stress)[periodic], frames.stress[periodic])
        report[name] = entry
    return report


def stress_relative_error(stress: np.ndarray, stress_ref: np.ndarray) -> float:
    """RMS of the stress error over RMS of the reference stress, over all frames and components
    (a per-frame ratio would explode on frames whose stress is near zero)."""
    return float(np.sqrt(np.mean((stress - stress_ref) ** 2) / np.mean(stress_ref**2)))
