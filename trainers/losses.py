"""The distillation loss: energy per atom, forces, stress, Hessian-vector products and the
teacher's per-atom energies.

Every term is a sum of per-element penalties divided by the element count of the *global*
batch, so data-parallel processes (whose gradients DDP averages) and one process seeing the same
global batch minimise the same function.
"""

from __future__ import annotations

import torch

from mlffc.data.loader import Batch
from mlffc.trainers.config import TrainConfig

TERMS = ("energy", "forces", "stress", "hessian", "atomic_energy")


def penalty(error: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    if config.loss == "huber":
        return torch.nn.functional.huber_loss(error, torch.zeros_like(error), reduction="none", delta=config.huber_delta)
    return error**2


def term_errors(student, batch: Batch, with_hessian: bool, with_atomic: bool = False) -> dict[str, torch.Tensor]:
    """Per-element errors of each labelled term (empty tensors where a term has no labels)."""
    graph = batch.graph
    positions = graph.positions.requires_grad_(with_hessian)
    outputs = student(positions, *graph.inputs()[1:], with_atomic_energies=with_atomic)
    energy, forces, stress = outputs[:3]
    errors = {
        "energy": (energy - batch.energy) / batch.natoms,
        "forces": (forces - batch.forces).flatten(),
        "stress": (stress[batch.stress_mask] - batch.stress[batch.stress_mask]).flatten(),
        "hessian": forces.new_zeros(0),
        "atomic_energy": forces.new_zeros(0),
    }
    if with_atomic:
        errors["atomic_energy"] = (outputs[3] - batch.atomic_energy)[batch.atomic_mask]
    if with_hessian:
        # H v = -d(F.v)/dx: exact, by one more backward through the force graph
        (hessian_product,) = torch.autograd.grad(-(forces * batch.hessian_direction).sum(), positions, create_graph=True)
        errors["hessian"] = (hessian_product - batch.hessian_product)[batch.hessian_mask].flatten()
    return errors


def loss_sums(errors: dict[str, torch.Tensor], config: TrainConfig) -> dict[str, torch.Tensor]:
    return {name: penalty(value, config).sum() for name, value in errors.items()}


def weights(config: TrainConfig) -> dict[str, float]:
    return {"energy": config.energy_weight, "forces": config.force_weight, "stress": config.stress_weight,
            "hessian": config.hessian_weight, "atomic_energy": config.atomic_energy_weight}
