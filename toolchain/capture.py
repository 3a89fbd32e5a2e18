"""Capture a student's energy + forces + stress as one exported graph with dynamic sizes.

`torch.export.export` of a forward that calls `torch.autograd.grad` fails on torch 2.13, so the
forward is first traced by `make_fx(tracing_mode="symbolic")`, which records the autograd
backward as ordinary ops, and the traced module is then exported with dynamic atom (N), edge (E)
and structure (B) counts. The weights become constants of the graph.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch.export import Dim, ExportedProgram
from torch.fx import GraphModule
from torch.fx.experimental.proxy_tensor import make_fx

from mlffc.graph import GRAPH_INPUTS, Graph, build_graph
from mlffc.students import Student

OUTPUTS = ("energy", "forces", "stress")


def example_graph(student: Student, sizes: tuple[int, ...] = (7, 11), seed: int = 0) -> Graph:
    """A small batch that covers every species of the student (B >= 2 and N, E distinct, so no
    size is specialised to a constant while tracing)."""
    rng = np.random.default_rng(seed)
    structures = []
    for n in sizes:
        numbers = [student.species[k % len(student.species)] for k in range(n)]
        grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * 1.2
        structures.append(Atoms(numbers=numbers, positions=grid + rng.normal(0, 0.05, grid.shape)))
    return build_graph(structures, student.cutoff)


def trace(student: Student, example: Graph | None = None) -> GraphModule:
    """The student's forward (energy, forces, stress) as an aten-level graph with symbolic sizes."""
    student = student.eval()
    example = example if example is not None else example_graph(student)
    return make_fx(student, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example.inputs())


def export(graph_module: GraphModule, example: Graph) -> ExportedProgram:
    """Export a traced graph with dynamic atom, edge and structure counts."""
    atoms, edges, structures = Dim("atoms", min=1), Dim("edges", min=0), Dim("structures", min=1)
    dynamic = {
        "positions": {0: atoms},
        "species": {0: atoms},
        "edge_index": {1: edges},
        "shifts": {0: edges},
        "cell": {0: structures},
        "batch": {0: atoms},
    }
    return torch.export.export(graph_module, example.inputs(), dynamic_shapes=tuple(dynamic[name] for name in GRAPH_INPUTS))
