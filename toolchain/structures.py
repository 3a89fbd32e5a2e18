"""Checks every structure passes before a teacher, a student or an artifact sees it, and the one
batcher (`atom_batches`) that packs structures into model calls and training batches by atom count.
Torch-free, so the JAX teachers, the data tools and the runtime can all import it."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlffc.errors import MlffcError

MIN_DISTANCE = 0.1  # Å: closer atoms are a units or generation error, not chemistry
MAX_CELL_LENGTH = 1e4  # Å: vesin's cell list dies (SIGFPE) on cells of ~1e6 Å
MAX_ATOM_DENSITY = 0.5  # atoms/Å³: diamond has 0.18, the densest matter ~0.2
# The other closest-pair cuts judge made structures, not inputs, so they are looser:
# data.validate.MIN_DISTANCE 0.5 (a stored frame), SamplingConfig.min_distance 0.6 (a sampled one),
# data.samplers.RELAXED_MIN_DISTANCE 0.8 (a relaxed minimum), data.mutate.MUTANT_MIN_DISTANCE 0.9 (a placed atom).
CHARGE_SPIN_KEYS = ("charge", "spin")  # atoms.info keys: total charge (e) and spin multiplicity 2S+1


def check_structures(
    structures: Sequence[Atoms], elements: Iterable[str] | None = None, allow_periodic: bool = True
) -> None:
    """Raise MlffcError naming the first bad structure: wrong type, NaN/inf, unsupported element,
    partial periodicity, degenerate cell, a molecule spread wider than MAX_CELL_LENGTH or atoms on
    top of each other."""
    allowed = None if elements is None else set(elements)
    for index, atoms in enumerate(structures):
        where = _Where(index, atoms)
        if not isinstance(atoms, Atoms):
            raise MlffcError(f"{where}: expected an ase.Atoms object")
        if len(atoms) == 0:
            raise MlffcError(f"{where}: has no atoms")
        numbers = atoms.numbers
        if numbers.min() < 1 or numbers.max() >= len(chemical_symbols):
            bad = int(numbers[(numbers < 1) | (numbers >= len(chemical_symbols))][0])
            raise MlffcError(f"structure {index}: atomic number {bad} is not an element (1-{len(chemical_symbols) - 1})")
        positions = atoms.positions
        if not np.all(np.isfinite(positions)):
            bad = int(np.argwhere(~np.isfinite(positions))[0, 0])
            raise MlffcError(f"{where}: position of atom {bad} is NaN or infinite")
        if allowed is not None:
            unknown = sorted({s for s in atoms.get_chemical_symbols() if s not in allowed}, key=chemical_symbols.index)
            if unknown:
                raise MlffcError(
                    f"{where}: element {', '.join(unknown)} is not supported (supported: {', '.join(sorted(allowed, key=chemical_symbols.index))})"
                )
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise MlffcError(f"{where}: partial periodicity pbc={pbc.tolist()} is not supported; use all or none")
        if pbc.all():
            if not allow_periodic:
                raise MlffcError(f"{where}: periodic cells are not supported by this model")
            check_cell(atoms.cell.array, len(atoms), where)
        else:
            extent = float(np.ptp(positions, axis=0).max())
            if extent > MAX_CELL_LENGTH:  # the neighbour search bins the bounding box like a cell
                raise MlffcError(f"{where}: atoms spread over {extent:.3g} Å; at most {MAX_CELL_LENGTH:g} Å is allowed "
                                 "(positions must be in Å)")
        if len(atoms) > 1 or pbc.all():
            _check_min_distance(atoms, where)


def check_cell(cell, natoms: int, where="the structure") -> None:
    """A periodic cell the neighbour search and the model can take: finite, vectors of at most
    MAX_CELL_LENGTH Å (longer ones crash the native neighbour search), non-degenerate, every
    perpendicular width at least MIN_DISTANCE (else each atom sits on its own image) and no denser
    than MAX_ATOM_DENSITY (a cell in the wrong units, or far smaller than the cutoff needs)."""
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3) or not np.isfinite(cell).all():
        raise MlffcError(f"{where}: the cell must be 3 x 3 finite numbers (Å), got {cell.tolist()}")
    lengths = np.linalg.norm(cell, axis=1)
    if lengths.max() > MAX_CELL_LENGTH:
        raise MlffcError(f"{where}: cell vector of {lengths.max():.3g} Å; at most {MAX_CELL_LENGTH:g} Å is allowed "
                         "(for a molecule or slab in vacuum, leave pbc off)")
    volume = abs(float(np.linalg.det(cell)))
    if volume < 1e-6:
        raise MlffcError(f"{where}: periodic but the cell has zero volume")
    widths = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    if widths.min() < MIN_DISTANCE:
        raise MlffcError(f"{where}: the cell is {widths.min():.3g} Å thick (perpendicular width); every atom would be "
                         f"within {MIN_DISTANCE} Å of its own image: cell must be in Å and at least {MIN_DISTANCE} Å across")
    density = natoms / volume
    if density > MAX_ATOM_DENSITY:
        raise MlffcError(f"{where}: {natoms} atoms in {volume:.3g} Å³ is {density:.3g} atoms/Å³, denser than any matter "
                         f"(at most {MAX_ATOM_DENSITY} allowed; diamond has 0.18): the cell must be in Å")


def charge_and_spin(atoms: Atoms, index: int = 0) -> tuple[int, int]:
    """Total charge and spin multiplicity (2S+1) from atoms.info['charge'] and ['spin'], defaults 0
    and 1 (a neutral singlet); MlffcError unless both are integers the electron count allows."""
    where = _Where(index, atoms)
    values = {}
    for key, default in zip(CHARGE_SPIN_KEYS, (0, 1)):
        value = atoms.info.get(key, default)
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (number and np.isfinite(value) and float(value).is_integer()):
            raise MlffcError(f"{where}: atoms.info[{key!r}] must be an integer, got {value!r}")
        values[key] = int(value)
    charge, spin = values["charge"], values["spin"]
    electrons = int(atoms.numbers.sum()) - charge
    if spin < 1:
        raise MlffcError(f"{where}: spin multiplicity (2S+1) must be 1 or more, got {spin}")
    if electrons < 1:
        raise MlffcError(f"{where}: charge {charge} leaves {electrons} electrons")
    if spin - 1 > electrons:
        raise MlffcError(f"{where}: spin multiplicity {spin} needs {spin - 1} unpaired electrons; there are {electrons}")
    if (electrons - spin + 1) % 2:
        parity = "odd" if electrons % 2 == 0 else "even"
        raise MlffcError(
            f"{where}: {electrons} electrons (charge {charge}) need an {parity} spin multiplicity, got {spin}"
        )
    return charge, spin


class _Where:
    """'structure K (FORMULA)', formatted only when an error needs it."""

    def __init__(self, index: int, atoms):
        self.index, self.atoms = index, atoms

    def __str__(self) -> str:
        name = self.atoms.get_chemical_formula() if isinstance(self.atoms, Atoms) else type(self.atoms).__name__
        return f"structure {self.index} ({name})"


def closest_pair(atoms: Atoms, within: float) -> tuple[int, int, float] | None:
    """The closest pair of atoms nearer than `within` Å (periodic images included), or None."""
    from vesin import NeighborList

    periodic = bool(atoms.pbc.all())
    box = atoms.cell.array if periodic else np.zeros((3, 3))
    # vesin's cell list has cells of the cutoff's size: a tiny cutoff means millions of cells
    search = max(within, 2.0)
    i, j, d = NeighborList(cutoff=search, full_list=False).compute(atoms.positions, box, periodic, "ijd")
    close = d < within
    if not close.any():
        return None
    i, j, d = i[close], j[close], d[close]
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def _check_min_distance(atoms: Atoms, where: str) -> None:
    pair = closest_pair(atoms, MIN_DISTANCE)
    if pair is not None:
        raise MlffcError(
            f"{where}: atoms {pair[0]} and {pair[1]} are {pair[2]:.3g} Å apart; "
            "positions must be in Å and atoms must not overlap"
        )


def atom_batches(natoms: Sequence[int], max_atoms: int, order: Iterable[int] | None = None,
                 periodic: Sequence[bool] | None = None, max_periodic_atoms: int | None = None,
                 min_frames: int = 1) -> list[list[int]]:
    """Index batches packed greedily by atom count: the indices in `order` (default all, as given)
    join the current batch until the next would take it past `max_atoms`, so a larger structure
    goes alone. With `periodic` (a flag per index) periodic and non-periodic indices are batched
    apart, non-periodic batches first, so one call sees one kind; periodic ones up to
    `max_periodic_atoms` if given. A batch closes only once it holds `min_frames` indices (one
    per data-parallel process), even past max_atoms. Every index in `order` lands once."""
    _check_count("max_atoms", max_atoms)
    if max_periodic_atoms is not None:
        _check_count("max_periodic_atoms", max_periodic_atoms)
    _check_count("min_frames", min_frames)
    order = range(len(natoms)) if order is None else [int(k) for k in order]
    batches: list[list[int]] = []
    for kind in (None,) if periodic is None else (False, True):
        limit = max_periodic_atoms if kind and max_periodic_atoms is not None else max_atoms
        current, size = [], 0
        for k in order:
            if kind is not None and bool(periodic[k]) != kind:
                continue
            n = int(natoms[k])
            if len(current) >= min_frames and size + n > limit:
                batches.append(current)
                current, size = [], 0
            current.append(k)
            size += n
        if current:
            batches.append(current)
    return batches


def structure_batches(structures: Sequence[Atoms], max_atoms: int, order: Iterable[int] | None = None,
                      max_periodic_atoms: int | None = None) -> list[list[int]]:
    """`atom_batches` of ASE structures with periodic and non-periodic ones kept apart, as a
    teacher's model call needs."""
    return atom_batches([len(a) for a in structures], max_atoms, order, [bool(a.pbc.all()) for a in structures],
                        max_periodic_atoms)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MlffcError(f"{name} must be an integer >= 1, got {value!r}")
