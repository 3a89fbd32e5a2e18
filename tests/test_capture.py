"""Every student captures into one exported graph (energy, forces, stress) with dynamic sizes."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from mlffc.capture import example_graph, export, trace
from mlffc.graph import build_graph
from mlffc.passes import PassSettings, run_passes
from mlffc.students import STUDENTS, build_student


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_exported_graph_matches_eager(name):
    torch.manual_seed(0)
    student = build_student(name, species=[1, 6, 7, 8]).eval()
    example = example_graph(student)
    graph_module, _ = run_passes(trace(student, example), ["remove_dead_code"], PassSettings())
    exported = export(graph_module, example).module()
    diamond = bulk("C", "diamond", a=3.57, cubic=True)
    diamond.rattle(0.05, seed=1)
    for structures in ([molecule("CH4")], [molecule("C6H6"), molecule("H2O"), diamond]):
        graph = build_graph(structures, student.cutoff)
        for compiled, eager in zip(exported(*graph.inputs()), student(*graph.inputs())):
            np.testing.assert_allclose(compiled.detach().numpy(), eager.detach().numpy(), rtol=1e-5, atol=1e-5)
