"""What every student shares: the species table, per-species reference energies, energy
accumulation in float64, and one autograd path for forces and stress (mlffc.graph.energy_forces_stress,
which the compiler traces too).

A student implements `atomic_energies(vectors, species_index, edge_index)`; energies depend on
positions only through edge vectors r_ij, so forces and the virial both come from dE/dr_ij.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from mlffc.graph import energy_forces_stress

MAX_Z = 119


class Student(nn.Module):
    """Base class: per-atom energy E0[z] + scale * student(z, environment), summed in float64."""

    name: str = ""

    def __init__(self, species: list[int], cutoff: float):
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        table = torch.full((MAX_Z,), -1, dtype=torch.int64)
        table[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("species_index", table)
        self.register_buffer("atomic_reference", torch.zeros(len(self.species), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float32))
        # Mean neighbours per atom in the training data: normalises sums over neighbours.
        self.register_buffer("avg_neighbours", torch.full((), 10.0))

    @abstractmethod
    def atomic_energies(self, vectors: torch.Tensor, z: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Dimensionless per-atom energies [N] from edge vectors [E, 3] and species indices [N]."""

    def config(self) -> dict:
        """Constructor arguments: enough to rebuild the module before loading weights."""
        return {"species": self.species, "cutoff": self.cutoff}

    def calibrate(self, graph) -> None:
        """Set data-dependent constants (e.g. feature scales) from a batch of training structures."""

    def energy(self, vectors, species, edge_index, cell, batch) -> torch.Tensor:
        """Energy per structure [B] (float64, eV) from edge vectors r_ij [E, 3]: the function the
        compiler captures, transforms and then differentiates (`energy_forces_stress`)."""
        atomic = self.atomic_energies_ev(vectors, species, edge_index)
        return torch.zeros(cell.shape[0], dtype=torch.float64, device=vectors.device).index_add(0, batch, atomic)

    def atomic_energies_ev(self, vectors, species, edge_index) -> torch.Tensor:
        """Per-atom energies [N] (float64, eV, reference energies included): they sum to `energy`."""
        z = self.species_index[species]
        atomic = self.atomic_energies(vectors, z, edge_index) * self.energy_scale
        return atomic.to(torch.float64) + self.atomic_reference[z]

    def forward(self, positions, species, edge_index, shifts, cell, batch, with_atomic_energies: bool = False):
        """Energy [B] (float64, eV), forces [N, 3] (eV/Å) and stress [B, 3, 3] (eV/Å³, zero
        where the cell is zero) in one function, so one captured graph holds all three. With
        `with_atomic_energies` (training against a teacher's per-atom partition) the per-atom
        energies [N] (eV) come fourth."""
        if not with_atomic_energies:
            return energy_forces_stress(self.energy, positions, species, edge_index, shifts, cell, batch, create_graph=self.training)
        kept = {}

        def energy(vectors, species, edge_index, cell, batch):
            kept["atomic"] = self.atomic_energies_ev(vectors, species, edge_index)
            return torch.zeros(cell.shape[0], dtype=torch.float64, device=vectors.device).index_add(0, batch, kept["atomic"])

        outputs = energy_forces_stress(energy, positions, species, edge_index, shifts, cell, batch, create_graph=self.training)
        return (*outputs, kept["atomic"])


class PolynomialCutoff(nn.Module):
    """Smooth envelope, 1 at r=0 and zero with two derivatives at the cutoff (p=6, as in DimeNet)."""

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff, self.p = cutoff, p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p, x = self.p, r / self.cutoff
        envelope = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        return envelope * (x < 1)


class BesselBasis(nn.Module):
    """sqrt(2/rc) sin(n pi r / rc) / r, n = 1..num_basis: the radial basis of DimeNet/nequip."""

    def __init__(self, cutoff: float, num_basis: int):
        super().__init__()
        self.register_buffer("frequencies", torch.arange(1, num_basis + 1, dtype=torch.float32) * torch.pi / cutoff)
        self.prefactor = (2.0 / cutoff) ** 0.5

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.prefactor * torch.sin(self.frequencies * r) / r


# Weights that turn the 6 unique components of a symmetric 3x3 (xx yy zz xy xz yz) into its Frobenius product.
SYMMETRIC_WEIGHTS = (1.0, 1.0, 1.0, 2.0, 2.0, 2.0)


def symmetric_outer(v: torch.Tensor) -> torch.Tensor:
    """The 6 unique components (xx yy zz xy xz yz) of v v^T, for v [..., 3]: [..., 6]."""
    x, y, z = v.unbind(-1)
    return torch.stack([x * x, y * y, z * z, x * y, x * z, y * z], -1)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)
