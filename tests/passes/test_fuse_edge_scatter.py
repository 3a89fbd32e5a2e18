import pytest
import torch

from passcheck import fresh, joint_of, max_difference, outputs, targets

from mlffc.capture import example_graph, trace_energy
from mlffc.passes import PassSettings
from mlffc.passes.core import finish
from mlffc.passes.fuse_edge_scatter import fuse_edge_scatter
from mlffc.students import build_student


def test_moments_become_one_op_with_its_backward_op(moment, moment_energy, batches):
    after = fuse_edge_scatter(fresh(moment_energy), PassSettings())
    assert targets(after).count("mlffc.scatter_outer.default") == 4  # dipole + quadrupole moments, two interactions
    assert "aten.index_add.default" in targets(after)  # the L=0 block stays a plain sum
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-6 and difference["forces"] < 1e-4 and difference["stress"] < 1e-4
    joint = targets(joint_of(after, moment))
    assert joint.count("mlffc.scatter_outer_backward.default") == 4


@pytest.mark.parametrize("name, fused", [("behler", 2), ("painn", 0)])
def test_other_students(name, fused, batches):
    torch.manual_seed(0)
    student = build_student(name, species=[1, 6, 7, 8]).eval()
    energy = finish(trace_energy(student, example_graph(student)))
    after = fuse_edge_scatter(fresh(energy), PassSettings())
    assert targets(after).count("mlffc.scatter_outer.default") == fused
    difference = max_difference(outputs(after, batches[:2]), outputs(energy, batches[:2]))
    assert difference["forces"] < 1e-4
