"""The calibration set every pass is checked on: graphs, the unmodified student's results on
them, the teacher's labels where known, and a ~300-atom system for timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from mlffc.graph import Graph
from mlffc.timing import median_ms

Outputs = list[tuple[np.ndarray, np.ndarray]]  # per graph: energy [B], forces [N, 3]
Evaluate = Callable[[Graph], tuple[torch.Tensor, ...]]


@dataclass
class Calibration:
    """graphs: batches to compare on; labels: per graph the teacher's (energy [B], forces [N, 3]),
    or None where unlabelled; timing: the graph speed is measured on (None: no timing)."""

    graphs: Sequence[Graph]
    labels: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None
    timing: Graph | None = None
    _natoms: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        self._natoms = [torch.bincount(g.batch, minlength=g.num_structures).numpy().astype(np.float64) for g in self.graphs]

    def run(self, evaluate: Evaluate) -> Outputs:
        results = []
        for graph in self.graphs:
            energy, forces, _ = evaluate(graph)
            results.append((energy.detach().double().numpy(), forces.detach().double().numpy()))
        return results

    def difference(self, outputs: Outputs, reference: Outputs) -> dict[str, float]:
        """Worst |outputs - reference|: energy per atom (eV) and force component (eV/Å)."""
        energy = max(float(np.abs((a[0] - b[0]) / n).max(initial=0)) for a, b, n in zip(outputs, reference, self._natoms))
        forces = max(float(np.abs(a[1] - b[1]).max(initial=0)) for a, b in zip(outputs, reference))
        return {"energy_per_atom": energy, "forces": forces}

    def teacher_force_mae(self, outputs: Outputs) -> float | None:
        labelled = [(o, label) for o, label in zip(outputs, self.labels or ()) if label is not None]
        if not labelled:
            return None
        return float(np.concatenate([np.abs(o[1] - label[1]).ravel() for o, label in labelled]).mean())

    def time_ms(self, evaluate: Evaluate) -> float | None:
        if self.timing is None:
            return None
        return median_ms(lambda: evaluate(self.timing), repeats=3, warmup=1, budget_s=2.0)
