"""Seed structures shipped with ASE: closed-shell CHNO molecules of G2 and the S22 dimers."""

from __future__ import annotations

import numpy as np
from ase import Atoms

CHNO = {"H", "C", "N", "O"}
# Closed-shell by spin but outside what an ANI-style teacher describes: singlet methylene (a
# carbene), ozone (strongly multi-reference) and H2 (ANI-1x collapses it in MD).
OUTSIDE_TEACHER_DOMAIN = {"CH2_s1A1d", "O3", "H2"}


def seed_molecules(elements: set[str] = CHNO) -> list[tuple[str, Atoms]]:
    """(group name, structure) pairs; radicals and OUTSIDE_TEACHER_DOMAIN are left out."""
    from ase.collections import g2, s22

    seeds = []
    for name, atoms in zip(g2.names, g2):
        closed_shell = not np.any(atoms.get_initial_magnetic_moments())
        usable = len(atoms) > 1 and closed_shell and name not in OUTSIDE_TEACHER_DOMAIN
        if usable and set(atoms.get_chemical_symbols()) <= elements:
            seeds.append((f"g2/{name}", _clean(atoms)))
    for name, atoms in zip(s22.names, s22):
        if set(atoms.get_chemical_symbols()) <= elements:
            seeds.append((f"s22/{name}", _clean(atoms)))
    return seeds


def _clean(atoms: Atoms) -> Atoms:
    """Positions and numbers only: no magnetic moments, calculators or cell from the collection."""
    return Atoms(numbers=atoms.numbers, positions=atoms.positions)
