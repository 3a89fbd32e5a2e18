"""Behler-Parrinello/ANI-style student: fixed descriptors and one network per element.

The descriptor is not learned: Gaussian radial shells per neighbour element (ANI's radial AEV)
and, for angles, the rotation invariants |M1|^2 and |M2|^2 of dipole and quadrupole moments of
a few short-range shells per neighbour element (angular information in O(edges) instead of ANI's
O(triplets)). Nothing per edge carries parameters, so the backward pass through the edges is
the cheapest of the students; all capacity sits in the per-element networks.
"""

from __future__ import annotations

import torch
from torch import nn

from mlffc.graph import edge_vectors
from mlffc.students.base import SYMMETRIC_WEIGHTS, PolynomialCutoff, Student, mlp


class BehlerParrinelloStudent(Student):
    """Fixed radial + angular-moment descriptors, one MLP per element (ANI style)."""

    name = "behler"

    def __init__(
        self,
        species: list[int],
        cutoff: float = 5.0,
        radial_shells: int = 16,
        angular_cutoff: float = 3.5,
        angular_shells: int = 4,
        hidden: tuple[int, ...] | list[int] = (64, 64),
    ):
        super().__init__(species, cutoff)
        self.radial_shells, self.angular_cutoff, self.angular_shells, self.hidden = (
            radial_shells, float(angular_cutoff), angular_shells, list(hidden))
        num_species = len(self.species)
        self.register_buffer("onehot", torch.eye(num_species))
        self.register_buffer("radial_centres", torch.linspace(0.8, cutoff, radial_shells))
        self.register_buffer("angular_centres", torch.linspace(0.8, angular_cutoff, angular_shells))
        self.radial_width = (cutoff - 0.8) / (radial_shells - 1)
        self.angular_width = (angular_cutoff - 0.8) / max(1, angular_shells - 1)
        self.envelope = PolynomialCutoff(cutoff)
        self.angular_envelope = PolynomialCutoff(angular_cutoff)
        self.register_buffer("sym_weights", torch.tensor(SYMMETRIC_WEIGHTS))
        width = num_species * (radial_shells + 3 * angular_shells)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.networks = nn.ModuleList(mlp([width, *self.hidden, 1]) for _ in self.species)

    def config(self) -> dict:
        return {**super().config(), "radial_shells": self.radial_shells, "angular_cutoff": self.angular_cutoff,
                "angular_shells": self.angular_shells, "hidden": self.hidden}

    def descriptors(self, vectors, z, edge_index) -> torch.Tensor:
        i, j = edge_index[0], edge_index[1]
        r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        u = vectors / r
        neighbour = self.onehot[z[j]].unsqueeze(1)  # [E, 1, S]
        radial = torch.exp(-(((r - self.radial_centres) / self.radial_width) ** 2)) * self.envelope(r)
        angular = torch.exp(-(((r - self.angular_centres) / self.angular_width) ** 2)) * self.angular_envelope(r)
        ux, uy, uz = u.unbind(-1)
        harmonics = torch.stack([torch.ones_like(ux), ux, uy, uz, ux * ux, uy * uy, uz * uz, ux * uy, ux * uz, uy * uz], -1)
        per_edge = torch.cat([
            (radial.unsqueeze(2) * neighbour).flatten(1),
            ((angular.unsqueeze(2) * harmonics.unsqueeze(1)).unsqueeze(3) * neighbour.unsqueeze(1)).flatten(1),
        ], 1)
        sums = torch.zeros(z.shape[0], per_edge.shape[1], dtype=per_edge.dtype, device=per_edge.device).index_add(0, i, per_edge)
        sums = sums / self.avg_neighbours
        num_species, radial_width = len(self.species), self.radial_shells * len(self.species)
        radial_part = sums[:, :radial_width]
        moments = sums[:, radial_width:].view(-1, self.angular_shells, 10, num_species)
        m0 = moments[:, :, 0]
        dipole = (moments[:, :, 1:4] ** 2).sum(2)
        quadrupole = (moments[:, :, 4:10] ** 2 * self.sym_weights.view(1, 1, 6, 1)).sum(2)
        return torch.cat([radial_part, m0.flatten(1), dipole.flatten(1), quadrupole.flatten(1)], -1)

    def atomic_energies(self, vectors, z, edge_index):
        features = (self.descriptors(vectors, z, edge_index) - self.feature_mean) / self.feature_std
        per_element = torch.cat([network(features) for network in self.networks], -1)  # [N, S]
        return (per_element * self.onehot[z]).sum(-1)

    @torch.no_grad()
    def calibrate(self, graph) -> None:
        """Standardise the descriptors over training structures."""
        vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
        features = self.descriptors(vectors, self.species_index[graph.species], graph.edge_index)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))
