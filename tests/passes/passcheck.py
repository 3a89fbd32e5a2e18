"""Helpers shared by the pass tests."""

from __future__ import annotations

from mlffc.capture import differentiate, example_graph
from mlffc.graph import energy_forces_stress
from mlffc.metrics import structure_atoms, worst_difference
from mlffc.passes.core import copy_graph_module


def fresh(graph_module):
    return copy_graph_module(graph_module)


def outputs(energy_graph, graphs):
    """Per graph: energy, forces, stress (float64) and the atoms of each structure."""
    return [(*(t.detach().double() for t in energy_forces_stress(energy_graph, *g.inputs())), structure_atoms(g)) for g in graphs]


def max_difference(a, b) -> dict[str, float]:
    """Worst absolute difference over the batches (metrics.worst_difference: energy per atom of
    each structure, eV; force components, eV/Å), and of stress components (eV/Å³)."""
    worst = worst_difference(a, b, [x[3] for x in a])
    worst["stress"] = max((float((x[2] - y[2]).abs().max()) for x, y in zip(a, b)), default=0.0)
    return worst


def targets(graph_module) -> list[str]:
    return [str(n.target) for n in graph_module.graph.nodes if n.op == "call_function"]


def joint_of(energy_graph, student):
    return differentiate(energy_graph, example_graph(student))
