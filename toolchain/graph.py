"""The one graph input every student, compiler and runtime shares.

A batch of B structures with N atoms and E directed edges (both i->j and j->i):
  positions  [N, 3] float32, Å
  species    [N]    int64, atomic numbers
  edge_index [2, E] int64, row 0 the centre atom i, row 1 its neighbour j, sorted by i
  shifts     [E, 3] float32, integer cell shifts S: r_ij = x_j - x_i + S @ cell[batch[i]]
  cell       [B, 3, 3] float32, Å (zeros for a non-periodic structure)
  batch      [N]    int64, structure index of each atom
Neighbour lists come from vesin, outside the model, so every runtime feeds the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from vesin import NeighborList

BATCH_ATOMS = 4096  # atoms per evaluation batch: memory stays small on a CPU while batches amortise the calls
# The joint graph's inputs and outputs: shapes in dynamic sizes (atoms, edges, structures), dtypes, units.
SIGNATURE = {
    "inputs": [
        {"name": "positions", "shape": ["atoms", 3], "dtype": "float32", "unit": "Angstrom"},
        {"name": "species", "shape": ["atoms"], "dtype": "int64", "unit": "atomic number"},
        {"name": "edge_index", "shape": [2, "edges"], "dtype": "int64", "unit": "atom index (centre, neighbour)"},
        {"name": "shifts", "shape": ["edges", 3], "dtype": "float32", "unit": "cell shifts (integers)"},
        {"name": "cell", "shape": ["structures", 3, 3], "dtype": "float32", "unit": "Angstrom"},
        {"name": "batch", "shape": ["atoms"], "dtype": "int64", "unit": "structure index"},
    ],
    "outputs": [
        {"name": "energy", "shape": ["structures"], "dtype": "float64", "unit": "eV"},
        {"name": "forces", "shape": ["atoms", 3], "dtype": "float32", "unit": "eV/Angstrom"},
        {"name": "stress", "shape": ["structures", 3, 3], "dtype": "float32", "unit": "eV/Angstrom^3"},
    ],
}
GRAPH_INPUTS = tuple(spec["name"] for spec in SIGNATURE["inputs"])
GRAPH_OUTPUTS = tuple(spec["name"] for spec in SIGNATURE["outputs"])
SIZES = {"atoms": 1, "edges": 0, "structures": 1}  # the signature's dynamic sizes and their least values


@dataclass
class Graph:
    positions: torch.Tensor
    species: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    cell: torch.Tensor
    batch: torch.Tensor

    @property
    def num_structures(self) -> int:
        return int(self.cell.shape[0])

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, name) for name in GRAPH_INPUTS)

    def to(self, device) -> "Graph":
        return Graph(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def neighbour_list(positions: np.ndarray, cell: np.ndarray, periodic: bool, cutoff: float):
    """Full, centre-sorted neighbour list: (i, j, integer shifts)."""
    box = cell if periodic else np.zeros((3, 3))
    i, j, shifts = NeighborList(cutoff=cutoff, full_list=True).compute(positions, box, periodic, "ijS")
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), shifts[order].astype(np.float32)


def local_positions(positions: np.ndarray, cell: np.ndarray, periodic: bool) -> np.ndarray:
    """Positions moved, in float64, to near the origin without changing any interatomic vector:
    wrapped into the cell (periodic) or centred on their mean (not). float32 then keeps ~1e-6 Å
    of a structure at 1e7 Å, where it would keep ~1 Å."""
    positions = np.asarray(positions, np.float64)
    if periodic and not abs(np.linalg.det(cell)) > 1e-6:
        return positions  # a degenerate cell: refused by check_structures, nothing to wrap into
    if periodic:
        fractional = np.linalg.solve(cell.T, positions.T).T
        return positions - np.floor(fractional) @ cell
    return positions - positions.mean(axis=0) if len(positions) else positions


def build_graph(structures: Sequence[Atoms], cutoff: float) -> Graph:
    """Batch ASE structures into one Graph (positions made local, then cast to float32 with the cells)."""
    edges, shifts, offset, local = [], [], 0, []
    for atoms in structures:
        periodic = bool(atoms.pbc.all())
        local.append(local_positions(atoms.positions, atoms.cell.array, periodic))
        i, j, s = neighbour_list(local[-1], atoms.cell.array, periodic, cutoff)
        edges.append(np.stack([i, j]) + offset)
        shifts.append(s)
        offset += len(atoms)
    natoms = [len(a) for a in structures]
    cells = [a.cell.array if a.pbc.all() else np.zeros((3, 3)) for a in structures]
    return Graph(
        positions=torch.from_numpy(np.concatenate(local).astype(np.float32)),
        species=torch.from_numpy(np.concatenate([a.numbers for a in structures]).astype(np.int64)),
        edge_index=torch.from_numpy(np.concatenate(edges, axis=1)),
        shifts=torch.from_numpy(np.concatenate(shifts)),
        cell=torch.from_numpy(np.stack(cells).astype(np.float32)),
        batch=torch.from_numpy(np.repeat(np.arange(len(structures), dtype=np.int64), natoms)),
    )


def edge_vectors(positions, edge_index, shifts, cell, batch) -> torch.Tensor:
    """r_ij = x_j - x_i + S_ij @ cell [E, 3]."""
    i, j = edge_index[0], edge_index[1]
    offsets = torch.bmm(shifts.unsqueeze(1), cell[batch[i]]).squeeze(1)
    return positions[j] - positions[i] + offsets


def energy_forces_stress(energy_fn, positions, species, edge_index, shifts, cell, batch, create_graph: bool = False):
    """Energy, forces and stress from an energy function of edge vectors: forces and the virial
    both come from dE/dr_ij (one autograd pass), sigma = (1/V) sum_ij r_ij (x) dE/dr_ij.
    `energy_fn(vectors, species, edge_index, cell, batch)` is a student's `energy` or its
    captured (and transformed) graph."""
    i, j = edge_index[0], edge_index[1]
    vectors = edge_vectors(positions, edge_index, shifts, cell, batch)
    if not vectors.requires_grad:
        vectors.requires_grad_(True)
    energy = energy_fn(vectors, species, edge_index, cell, batch)
    (dE_dr,) = torch.autograd.grad(energy.sum(), vectors, create_graph=create_graph)
    forces = torch.zeros_like(positions).index_add(0, i, dE_dr).index_add(0, j, -dE_dr)
    edge_virial = (dE_dr.unsqueeze(2) * vectors.unsqueeze(1)).reshape(-1, 9)
    virial = torch.zeros(cell.shape[0], 9, dtype=positions.dtype, device=positions.device)
    virial = virial.index_add(0, batch[i], edge_virial).reshape(-1, 3, 3)
    volume = torch.linalg.cross(cell[:, 0], cell[:, 1], dim=-1).mul(cell[:, 2]).sum(-1).abs()
    periodic = (volume > 0).reshape(-1, 1, 1)
    stress = torch.where(periodic, virial / torch.where(periodic, volume.reshape(-1, 1, 1), 1.0), 0.0)
    return energy, forces, stress
