"""Which labelled frames to keep: where the teacher ensemble disagrees, and no near-duplicates.

Both work within a group (one molecule, material or packed system), so every molecule stays in
the data. The duplicate test is shared with `mlffc data validate`."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist

from mlffc.data.storage import Frames

MAX_DESCRIBED_ATOMS = 64  # larger frames (packed systems) are never near-duplicates of each other in practice


def normalised_spread(frames: Frames) -> np.ndarray:
    """Ensemble energy spread per sqrt(atoms), eV: comparable across molecule sizes when member
    errors are independent per atom."""
    return frames.energy_spread / np.sqrt(frames.natoms)


def uncertain(frames: Frames, quantile: float) -> np.ndarray:
    """Mask of frames to keep: in each group, all but the `quantile` fraction with the lowest
    normalised spread; a group's `seed` frame (its reference geometry) is always kept."""
    keep = np.ones(len(frames), dtype=bool)
    if quantile <= 0 or frames.energy_spread is None:
        return keep
    spread = normalised_spread(frames)
    for members in groups_of(frames):
        threshold = np.quantile(spread[members], quantile)
        keep[members] = (spread[members] >= threshold) | (frames.sampler[members] == "seed")
    return keep


def duplicate_pairs(frames: Frames, tolerance: float) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of frames in one group with the same atoms whose sorted interatomic
    distances differ by less than `tolerance` Å (root mean square): the same configuration up
    to rotation, translation and permutation of like atoms. Frames above MAX_DESCRIBED_ATOMS
    atoms are not compared."""
    pairs = []
    offsets = frames.offsets
    for members in groups_of(frames):
        by_formula: dict[bytes, list[int]] = {}
        for k in members:
            if frames.natoms[k] > 1 and frames.natoms[k] <= MAX_DESCRIBED_ATOMS:
                formula = np.sort(frames.numbers[offsets[k] : offsets[k + 1]]).tobytes()
                by_formula.setdefault(formula, []).append(int(k))
        for same in by_formula.values():
            if len(same) < 2:
                continue
            described = np.stack([np.sort(pdist(frames.positions[offsets[k] : offsets[k + 1]])) for k in same])
            distance = cdist(described, described) / np.sqrt(described.shape[1])
            for a, b in zip(*np.nonzero(np.triu(distance < tolerance, k=1))):
                pairs.append((same[a], same[b]))
    return sorted(pairs)


def without_duplicates(frames: Frames, tolerance: float) -> np.ndarray:
    """Mask keeping the first frame of each set of near-duplicates."""
    keep = np.ones(len(frames), dtype=bool)
    for _, later in duplicate_pairs(frames, tolerance):
        keep[later] = False
    return keep


def groups_of(frames: Frames) -> list[np.ndarray]:
    """Frame indices of each group (in frame order within a group)."""
    _, inverse = np.unique(frames.group, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse))[:-1])
