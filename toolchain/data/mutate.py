"""New closed-shell CHNO molecules from the seeds: replace a hydrogen by CH3, NH2 or OH (the
sampler then relaxes them with the teacher, with the seeds). Distillation transfers to unseen molecules only as far as the
training chemistry reaches; 80 seed molecules are too few, and each substitution keeps the
molecule closed-shell while changing its bonding environments."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlffc.structures import closest_pair

# single-bond lengths (Å) between the parent heavy atom and the substituent's heavy atom
_BOND = {frozenset("CC"): 1.51, frozenset("CN"): 1.47, frozenset("CO"): 1.43, frozenset("NN"): 1.45,
         frozenset("NO"): 1.42, frozenset("OO"): 1.47}
# substituent: heavy atom, X-H bond length, number of hydrogens
SUBSTITUENTS = {"CH3": ("C", 1.09, 3), "NH2": ("N", 1.01, 2), "OH": ("O", 0.97, 1)}
TETRAHEDRAL = np.deg2rad(109.5)
MUTANT_SEPARATOR = "+"  # group of a mutant: "<parent group>+<substituent>@<hydrogen index>"
# Å: a placed substituent atom this close to another atom overlaps it (the bonds placed are
# 0.97-1.09 Å); such a mutant is dropped before any teacher sees it
MUTANT_MIN_DISTANCE = 0.9


def substitute(atoms: Atoms, hydrogen: int, group: str, rng: np.random.Generator) -> Atoms | None:
    """`atoms` with hydrogen `hydrogen` replaced by `group` in a staggered tetrahedral geometry,
    or None when that hydrogen is not bonded to C, N or O or the new atoms would clash."""
    symbols = atoms.get_chemical_symbols()
    heavy = [k for k, s in enumerate(symbols) if s != "H"]
    if not heavy:
        return None
    distances = np.linalg.norm(atoms.positions[heavy] - atoms.positions[hydrogen], axis=1)
    parent = heavy[int(np.argmin(distances))]
    if distances.min() > 1.25:
        return None
    element, bond_h, count = SUBSTITUENTS[group]
    axis = atoms.positions[hydrogen] - atoms.positions[parent]
    axis /= np.linalg.norm(axis)
    centre = atoms.positions[parent] + axis * _BOND[frozenset(symbols[parent] + element)]
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    phase = rng.uniform(0, 2 * np.pi)
    hydrogens = [
        centre + bond_h * (-np.cos(TETRAHEDRAL) * axis + np.sin(TETRAHEDRAL) * (np.cos(phi) * e1 + np.sin(phi) * e2))
        for phi in phase + np.arange(count) * 2 * np.pi / 3
    ]
    keep = [k for k in range(len(atoms)) if k != hydrogen]
    mutant = Atoms(
        symbols=[symbols[k] for k in keep] + [element] + ["H"] * count,
        positions=np.concatenate([atoms.positions[keep], [centre], hydrogens]),
    )
    return None if closest_pair(mutant, MUTANT_MIN_DISTANCE) is not None else mutant


def mutate_seeds(seeds: list[tuple[str, Atoms]], per_seed: int, rng: np.random.Generator) -> list[tuple[str, Atoms]]:
    """Up to `per_seed` unrelaxed mutants of each seed (random hydrogen, random substituent)."""
    mutants = []
    for group, atoms in seeds:
        hydrogens = [k for k, s in enumerate(atoms.get_chemical_symbols()) if s == "H"]
        for hydrogen in rng.permutation(hydrogens)[:per_seed]:
            substituent = str(rng.choice(list(SUBSTITUENTS)))
            mutant = substitute(atoms, int(hydrogen), substituent, rng)
            if mutant is not None:
                mutants.append((f"{group}{MUTANT_SEPARATOR}{substituent}@{hydrogen}", mutant))
    return mutants


def parent_group(group: str) -> str:
    """The seed a (possibly mutated) group descends from: splits keep families together."""
    return group.split(MUTANT_SEPARATOR)[0]
