"""Capture a student as graphs: the energy graph, which the compiler's passes transform, and the
joint graph of energy, forces and stress, which is exported with dynamic sizes.

`torch.export.export` of a forward that calls `torch.autograd.grad` fails on torch 2.13, so
graphs are traced by `make_fx(tracing_mode="symbolic")`. The student's energy of edge vectors is
traced first (`trace_energy`); passes rewrite it (fusions into custom ops with their own backward
ops, precision, quantization); `differentiate` then traces energy -> forces + stress through it, so
the joint graph holds the forward and the autograd backward as explicit ops (stress from the
virial over edge vectors, equivalent to the strain derivative). `export` gives the joint graph
dynamic atom (N), edge (E) and structure (B) counts. Weights become named constants.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch.export import Dim, ExportedProgram
from torch.fx import GraphModule
from torch.fx.experimental.proxy_tensor import make_fx

from mlffc.graph import GRAPH_INPUTS, SIGNATURE, SIZES, Graph, build_graph, edge_vectors, energy_forces_stress
from mlffc.students import Student

ENERGY_INPUTS = ("vectors", "species", "edge_index", "cell", "batch")


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


def energy_inputs(graph: Graph) -> tuple[torch.Tensor, ...]:
    """The energy graph's inputs (ENERGY_INPUTS) for a batch."""
    return (edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch),
            graph.species, graph.edge_index, graph.cell, graph.batch)


def trace_energy(student: Student, example: Graph | None = None) -> GraphModule:
    """The student's energy of edge vectors [B] as an aten-level graph with symbolic sizes; its
    constants carry the student's parameter and buffer names (dots as underscores)."""
    student = student.eval()
    example = example if example is not None else example_graph(student)

    def energy(vectors, species, edge_index, cell, batch):
        return student.energy(vectors, species, edge_index, cell, batch)

    with torch.no_grad():
        graph_module = make_fx(energy, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*energy_inputs(example))
    names = {id(t): name.replace(".", "_") for name, t in [*student.named_parameters(), *student.named_buffers()]}
    return _name_constants(graph_module, names)


def differentiate(energy_graph: GraphModule, example: Graph) -> GraphModule:
    """The joint graph (GRAPH_INPUTS -> energy, forces, stress): the energy graph and its
    autograd backward traced together (custom ops contribute their registered backward ops)."""

    def joint(positions, species, edge_index, shifts, cell, batch):
        return energy_forces_stress(energy_graph, positions, species, edge_index, shifts, cell, batch)

    graph_module = make_fx(joint, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example.inputs())
    names = {id(getattr(energy_graph, n.target)): n.target for n in energy_graph.graph.nodes if n.op == "get_attr"}
    return _name_constants(graph_module, names)


def trace(student: Student, example: Graph | None = None) -> GraphModule:
    """The unmodified student's joint graph (energy, forces, stress)."""
    example = example if example is not None else example_graph(student)
    return differentiate(trace_energy(student, example), example)


def _name_constants(graph_module: GraphModule, names: dict[int, str]) -> GraphModule:
    """Rename make_fx's `_param_constantN`/`_tensor_constantN` to `names[id(tensor)]` where known,
    and store every constant detached (constants of a compiled graph need no gradient)."""
    renamed: dict[str, str] = {}
    for node in graph_module.graph.nodes:
        if node.op != "get_attr":
            continue
        if node.target not in renamed:
            tensor = getattr(graph_module, node.target)
            new = names.get(id(tensor), node.target)
            if new != node.target and hasattr(graph_module, new):
                new = node.target
            delattr(graph_module, node.target)
            graph_module.register_buffer(new, tensor.detach())
            renamed[node.target] = new
        node.target = renamed[node.target]
    graph_module.recompile()
    return graph_module


def export(graph_module: GraphModule, example: Graph) -> ExportedProgram:
    """Export a joint graph with dynamic atom, edge and structure counts."""
    sizes = {name: Dim(name, min=low) for name, low in SIZES.items()}
    dynamic = [{k: sizes[d] for k, d in enumerate(spec["shape"]) if isinstance(d, str)} for spec in SIGNATURE["inputs"]]
    return torch.export.export(graph_module, example.inputs(), dynamic_shapes=tuple(dynamic))
