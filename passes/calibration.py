"""The calibration set every pass is checked on: graphs, the unmodified student's results on
them, the teacher's labels where known, and a ~300-atom system for timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from mlffc.graph import Graph
from mlffc.metrics import run_graphs, structure_atoms, worst_difference
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
        self._natoms = [structure_atoms(g) for g in self.graphs]

    def run(self, evaluate: Evaluate) -> Outputs:
        """Energy and forces of `evaluate` on every calibration graph, float64."""
        return [(energy.astype(np.float64), forces.astype(np.float64)) for energy, forces, *_ in run_graphs(evaluate, self.graphs)]

    def difference(self, outputs: Outputs, reference: Outputs) -> dict[str, float]:
        """Worst difference of outputs from reference (metrics.worst_difference): forces absolute
        below FORCE_SCALE and relative above, as float32 rounding grows with the force; the one
        measure for pass budgets and acceptance."""
        return worst_difference(outputs, reference, self._natoms, relative_forces=True)

    def teacher_force_mae(self, outputs: Outputs) -> float | None:
        labelled = [(o, label) for o, label in zip(outputs, self.labels or ()) if label is not None]
        if not labelled:
            return None
        return float(np.concatenate([np.abs(o[1] - label[1]).ravel() for o, label in labelled]).mean())

    def time_ms(self, evaluate: Evaluate) -> float | None:
        if self.timing is None:
            return None
        return median_ms(lambda: evaluate(self.timing), repeats=3, warmup=1, budget_s=2.0)
