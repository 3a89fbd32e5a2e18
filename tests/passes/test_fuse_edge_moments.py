import pytest
import torch

from passcheck import fresh, joint_of, max_difference, outputs, targets

from mlffc.capture import example_graph, trace_energy
from mlffc.graph import energy_forces_stress
from mlffc.passes import PassSettings
from mlffc.passes.core import EXACT, finish
from mlffc.passes.fuse_edge_moments import fuse_edge_moments
from mlffc.passes.fuse_edge_scatter import fuse_edge_scatter
from mlffc.students import build_student


def test_each_interactions_moments_become_one_op_with_its_backward_op(moment, moment_energy, batches):
    after = fuse_edge_moments(fresh(moment_energy), PassSettings())
    assert targets(after).count("mlffc.edge_moments.default") == 2  # one per interaction: L = 0, 1, 2 together
    assert targets(after).count("aten.index_add.default") == 1  # only the energy sum over atoms is left
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < EXACT.energy_per_atom and difference["forces"] < EXACT.forces
    assert difference["stress"] < 1e-4
    joint = targets(joint_of(after, moment))
    assert joint.count("mlffc.edge_moments_backward.default") == 2
    assert "mlffc.scatter_outer.default" not in targets(fuse_edge_scatter(fresh(after), PassSettings()))  # nothing left for it


def test_the_channel_factors_are_read_in_place(moment_energy):
    """Each interaction's three channel blocks are consecutive column slices of one tensor, passed as it is."""
    after = fuse_edge_moments(fresh(moment_energy), PassSettings())
    fused = [n for n in after.graph.nodes if str(n.target) == "mlffc.edge_moments.default"]
    assert all(str(n.args[0].target) != "aten.cat.default" for n in fused)
    assert fused[0].args[1] is fused[1].args[1]  # one angular basis for both interactions
    assert fused[0].args[4] == [0, 3, 6]


@pytest.mark.parametrize("name", ["painn", "behler"])
def test_no_op_without_the_pattern(name):
    """PaiNN's messages are not outer products; Behler's sum has blocks of different channel counts (16 and 40)."""
    torch.manual_seed(0)
    student = build_student(name, species=[1, 6, 7, 8]).eval()
    energy = finish(trace_energy(student, example_graph(student)))
    before = targets(energy)
    assert targets(fuse_edge_moments(fresh(energy), PassSettings())) == before


def test_edges_not_sorted_by_centre_are_refused(moment_energy, batches):
    after = fuse_edge_moments(fresh(moment_energy), PassSettings())
    graph = batches[0]
    order = torch.randperm(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="edges must be sorted by centre"):
        energy_forces_stress(after, graph.positions, graph.species, graph.edge_index[:, order], graph.shifts[order],
                             graph.cell, graph.batch)
