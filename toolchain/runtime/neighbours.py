"""Neighbour list with a Verlet skin, for MD: one vesin list out to cutoff + skin, reused while
no atom has moved more than skin / 2 since it was built (no pair can then have come from beyond
cutoff + skin to within the cutoff), and rebuilt when one has or when the cell, the periodicity
or the atoms changed.

Every step the cached pairs are filtered to those within the cutoff at the current positions.
Passing all cached pairs instead gives identical forces (the students' cutoff envelope makes a
pair beyond the cutoff contribute exactly zero), but the model's cost grows with its edges: a
1 Å skin on a 5 Å cutoff carries ~1.5x the pairs, and a pair costs the model far more than the
filter's gather-and-compare (docs/runtime.md has the measurement).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlffc.errors import MlffcError
from mlffc.graph import Graph, local_positions, neighbour_list

DEFAULT_SKIN = 1.0  # Å


class VerletList:
    """A cached neighbour list: `stale(atoms)` says when to `rebuild(atoms)`; `graph(atoms)` is the
    model's input at the current positions. `rebuilds` and `steps` count rebuilds and graphs."""

    def __init__(self, cutoff: float, skin: float = DEFAULT_SKIN):
        if skin < 0:
            raise MlffcError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.rebuilds = self.steps = 0
        self._reference: np.ndarray | None = None

    def stale(self, atoms: Atoms) -> bool:
        """True before the first build, when atoms, cell or periodicity changed, when an atom moved
        more than skin / 2 since the last build, or when a position is not finite."""
        if self._reference is None or len(atoms) != len(self._reference):
            return True
        if not (np.array_equal(atoms.numbers, self._numbers) and np.array_equal(atoms.pbc, self._pbc)
                and np.array_equal(atoms.cell.array, self._cell_array)):
            return True
        moved = atoms.positions - self._reference
        largest = np.einsum("ij,ij->i", moved, moved).max()
        return not largest <= (self.skin / 2) ** 2  # NaN compares False: rebuild, where checks catch it

    def rebuild(self, atoms: Atoms) -> None:
        """List every pair within cutoff + skin at the current positions."""
        periodic = bool(atoms.pbc.all())
        cell = atoms.cell.array if periodic else np.zeros((3, 3))
        # the same translation of each atom until the next rebuild: near the origin for float32
        self._translation = local_positions(atoms.positions, atoms.cell.array, periodic) - atoms.positions
        i, j, shifts = neighbour_list(atoms.positions + self._translation, cell, periodic, self.cutoff + self.skin)
        self._i, self._j = i, j
        self._offsets = shifts.astype(np.float64) @ cell
        self._edge_index = torch.from_numpy(np.stack([i, j]))
        self._shifts = torch.from_numpy(shifts)
        self._reference = atoms.positions.copy()
        self._numbers, self._pbc, self._cell_array = atoms.numbers.copy(), atoms.pbc.copy(), atoms.cell.array.copy()
        self._species = torch.from_numpy(atoms.numbers.astype(np.int64))
        self._cell = torch.from_numpy(cell.astype(np.float32)).unsqueeze(0)
        self._batch = torch.zeros(len(atoms), dtype=torch.int64)
        self.rebuilds += 1

    def graph(self, atoms: Atoms) -> Graph:
        """The cached pairs within the cutoff at the current positions (call when not stale)."""
        positions = atoms.positions + self._translation
        vectors = positions[self._j] - positions[self._i]
        vectors += self._offsets
        within = torch.from_numpy(np.einsum("ij,ij->i", vectors, vectors) < self.cutoff**2)
        self.steps += 1
        return Graph(
            positions=torch.from_numpy(positions.astype(np.float32)),
            species=self._species,
            edge_index=self._edge_index[:, within],
            shifts=self._shifts[within],
            cell=self._cell,
            batch=self._batch,
        )
