"""Helpers shared by the pass tests."""

from __future__ import annotations

from mlffc.capture import differentiate, example_graph
from mlffc.passes.core import copy_graph_module
from mlffc.students.base import energy_forces_stress


def fresh(graph_module):
    return copy_graph_module(graph_module)


def outputs(energy_graph, graphs):
    return [tuple(t.detach().double() for t in energy_forces_stress(energy_graph, *g.inputs())) for g in graphs]


def max_difference(a, b) -> dict[str, float]:
    """Worst |a - b| over the batches: energy per atom (eV), forces and stress components."""
    worst = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for x, y in zip(a, b):
        worst["energy"] = max(worst["energy"], float((x[0] - y[0]).abs().max() / x[1].shape[0]))
        worst["forces"] = max(worst["forces"], float((x[1] - y[1]).abs().max()))
        worst["stress"] = max(worst["stress"], float((x[2] - y[2]).abs().max()))
    return worst


def targets(graph_module) -> list[str]:
    return [str(n.target) for n in graph_module.graph.nodes if n.op == "call_function"]


def joint_of(energy_graph, student):
    return differentiate(energy_graph, example_graph(student))
