"""Molecular clusters: copies of a molecule, randomly oriented, on a jittered cubic lattice at
liquid-like spacing (a 100-water cluster is the project's ~300-atom speed and MD system)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule as ase_molecule
from scipy.spatial.transform import Rotation


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
