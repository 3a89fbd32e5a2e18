"""Molecular clusters and boxes.

`molecular_cluster`: copies of one molecule on a jittered cubic lattice (the 100-water cluster is
the project's ~300-atom speed and MD system: compact and reproducible). `packed_molecules`: a
mixture of molecules inserted at random positions and orientations without overlaps at a
liquid-like density, as a cluster or a periodic box: the condensed-phase configurations a
dataset of isolated molecules lacks."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule as ase_molecule
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from mlffc.errors import MlffcError

AMU_PER_G_CM3 = 1.66053907  # Å^3 per (amu / (g/cm^3)): volume = mass / density * this
MIN_GAP = 1.6  # Å: nearest allowed distance between atoms of different molecules
INSERTION_ATTEMPTS = 200  # random placements per molecule before the volume grows by GROWTH
GROWTH = 1.05


def molecular_cluster(
    molecule: Atoms | str, count: int, spacing: float = 3.1, seed: int = 0, periodic: bool = False
) -> Atoms:
    """`count` copies of `molecule` (an Atoms or an ASE molecule name) with `spacing` Å between
    lattice sites; with periodic=True the lattice fills a cubic cell exactly."""
    template = ase_molecule(molecule) if isinstance(molecule, str) else molecule
    rng = np.random.default_rng(seed)
    side = int(np.ceil(count ** (1 / 3)))
    sites = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:count] * spacing
    centred = template.positions - template.positions.mean(axis=0)
    rotations = Rotation.random(count, random_state=rng.integers(2**31))
    positions = np.concatenate([rotations[k].apply(centred) + sites[k] + rng.normal(0, 0.1, 3) for k in range(count)])
    cluster = Atoms(numbers=np.tile(template.numbers, count), positions=positions)
    if periodic:
        cluster.set_cell(np.eye(3) * side * spacing)
        cluster.set_pbc(True)
        cluster.wrap()
    return cluster


def packed_molecules(
    molecules: list[Atoms], density: float, rng: np.random.Generator, periodic: bool, rattle: float = 0.0
) -> Atoms:
    """`molecules` (each rattled by `rattle` Å) inserted one by one, largest first, at random
    orientations and positions with no two atoms of different molecules nearer than MIN_GAP:
    into a cubic periodic box, or a sphere, whose volume gives `density` (g/cm^3). When a
    molecule finds no place in INSERTION_ATTEMPTS tries, the volume grows by GROWTH (the
    placed molecules move with it), so the density reached can be lower than asked. A box is never
    smaller than the largest molecule's diameter plus MIN_GAP, so no molecule meets its own image."""
    if not molecules or density <= 0:
        raise MlffcError("packing needs at least one molecule and a positive density")
    volume = sum(m.get_masses().sum() for m in molecules) / density * AMU_PER_G_CM3
    order = sorted(range(len(molecules)), key=lambda k: -len(molecules[k]))
    size = volume ** (1 / 3) if periodic else (3 * volume / (4 * np.pi)) ** (1 / 3)  # box side or sphere radius
    if periodic:  # no molecule may reach its own periodic image
        size = max(size, max(_diameter(m) for m in molecules) + MIN_GAP)
    placed: list[np.ndarray] = []  # centred, rotated positions of each placed molecule
    centres: list[np.ndarray] = []
    for k in order:
        shape = molecules[k].positions - molecules[k].positions.mean(axis=0)
        shape = Rotation.random(random_state=rng.integers(2**31)).apply(shape)
        shape = shape + rng.normal(0.0, rattle, shape.shape)
        while True:
            existing = np.concatenate([p + c for p, c in zip(placed, centres)]) if placed else np.zeros((0, 3))
            tree = cKDTree(existing % size, boxsize=size) if periodic and placed else cKDTree(existing) if placed else None
            for _ in range(INSERTION_ATTEMPTS):
                centre = rng.uniform(0, size, 3) if periodic else _in_ball(rng, size)
                candidate = shape + centre
                if tree is None or not any(tree.query_ball_point(candidate % size if periodic else candidate, MIN_GAP)):
                    break
            else:
                centres = [c * GROWTH for c in centres]
                size *= GROWTH
                continue
            placed.append(shape)
            centres.append(centre)
            break
    numbers = np.concatenate([molecules[k].numbers for k in order])
    positions = np.concatenate([p + c for p, c in zip(placed, centres)])
    if not periodic:
        return Atoms(numbers=numbers, positions=positions - positions.mean(axis=0))
    box = Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * size, pbc=True)
    box.wrap()
    return box


def _diameter(molecule: Atoms) -> float:
    """The largest distance between two atoms of `molecule` (whatever its orientation)."""
    return float(pdist(molecule.positions).max()) if len(molecule) > 1 else 0.0


def _in_ball(rng: np.random.Generator, radius: float) -> np.ndarray:
    direction = rng.normal(size=3)
    return direction / np.linalg.norm(direction) * radius * rng.uniform() ** (1 / 3)
