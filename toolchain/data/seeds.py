"""Seed structures built with ASE: closed-shell molecules of G2 and the S22 dimers, and small bulk
crystals. Each seed is (group, structure); datasets are split by group."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states

CHNO = {"H", "C", "N", "O"}
# Closed-shell by spin but outside what an ANI-style teacher describes: singlet methylene (a
# carbene), ozone (strongly multi-reference) and H2 (ANI-1x collapses it in MD).
OUTSIDE_TEACHER_DOMAIN = {"CH2_s1A1d", "O3", "H2"}

# Group: ase.build.bulk arguments (elements at ASE's reference lattice constants unless given).
CRYSTALS = {
    "Cu_fcc": dict(name="Cu"),
    "Al_fcc": dict(name="Al"),
    "Ni_fcc": dict(name="Ni"),
    "Ag_fcc": dict(name="Ag"),
    "Fe_bcc": dict(name="Fe"),
    "W_bcc": dict(name="W"),
    "Mg_hcp": dict(name="Mg"),
    "Ti_hcp": dict(name="Ti"),
    "Si_diamond": dict(name="Si"),
    "C_diamond": dict(name="C"),
    "NaCl_rocksalt": dict(name="NaCl", crystalstructure="rocksalt", a=5.64),
    "MgO_rocksalt": dict(name="MgO", crystalstructure="rocksalt", a=4.21),
    "GaAs_zincblende": dict(name="GaAs", crystalstructure="zincblende", a=5.65),
}
MAX_CRYSTAL_ATOMS = 32  # small cells: an Orb call on ~20 atoms costs ~0.1 s on a CPU


def seed_molecules(elements: Iterable[str] = CHNO) -> list[tuple[str, Atoms]]:
    """(group, molecule) pairs of molecules made of `elements` only; radicals and
    OUTSIDE_TEACHER_DOMAIN are left out. Each molecule is its own group."""
    from ase.collections import g2, s22

    elements = set(elements)
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


def seed_crystals(elements: Iterable[str] | None = None) -> list[tuple[str, Atoms]]:
    """(group, cell) pairs: per material of CRYSTALS made of `elements` only (all if None), its
    cubic (hcp: orthorhombic) cell, the primitive cell repeated 2x2x2 (a skewed cell) and the
    first repeated 2x2x2 when that stays within MAX_CRYSTAL_ATOMS. The material is the group, so
    a held-out material is unseen in training."""
    seeds = []
    for group, arguments in CRYSTALS.items():
        primitive = bulk(**arguments)
        if elements is not None and not set(primitive.get_chemical_symbols()) <= set(elements):
            continue
        conventional = bulk(**arguments, orthorhombic=True) if _is_hcp(arguments) else bulk(**arguments, cubic=True)
        cells = [conventional, primitive * (2, 2, 2), conventional * (2, 2, 2)]
        seeds += [(f"bulk/{group}", _clean(cell)) for cell in cells if len(cell) <= MAX_CRYSTAL_ATOMS]
    return seeds


SEED_SETS: dict[str, Callable[[Iterable[str]], list[tuple[str, Atoms]]]] = {
    "molecules": seed_molecules,
    "crystals": seed_crystals,
}


def first_groups(seeds: list[tuple[str, Atoms]], limit: int | None) -> list[tuple[str, Atoms]]:
    """The seeds of the first `limit` groups (all if None), in order."""
    if limit is None:
        return seeds
    kept: list[str] = []
    for group, _ in seeds:
        if group not in kept:
            kept.append(group)
    kept = kept[:limit]
    return [(group, atoms) for group, atoms in seeds if group in kept]


def _is_hcp(arguments: dict) -> bool:
    structure = arguments.get("crystalstructure") or reference_states[atomic_numbers[arguments["name"]]]["symmetry"]
    return structure == "hcp"


def _clean(atoms: Atoms) -> Atoms:
    """Numbers, positions and (for a crystal) the cell only: no magnetic moments or calculators."""
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
