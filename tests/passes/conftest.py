"""Fixtures for the pass tests: small students (random weights, features standardised on a water
cluster), their traced energy graphs, and batches to compare results on."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

from mlffc.capture import example_graph, trace_energy
from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph
from mlffc.passes.core import finish
from mlffc.students import build_student


def _student(name: str, **config):
    torch.manual_seed(0)
    student = build_student(name, species=[1, 6, 7, 8], **config).eval()
    student.calibrate(build_graph([molecular_cluster("H2O", 8), molecule("CH3CONH2"), molecule("HCN")], student.cutoff))
    return student


@pytest.fixture(scope="session")
def moment():
    return _student("moment", channels=8, hidden=[32, 32])


@pytest.fixture(scope="session")
def moment_energy(moment):
    """The moment student's energy graph, traced once; tests take copies (passcheck.fresh)."""
    return finish(trace_energy(moment, example_graph(moment)))


@pytest.fixture(scope="session")
def batches(moment):
    diamond = bulk("C", "diamond", a=3.57, cubic=True)
    diamond.rattle(0.05, seed=1)
    structures = [molecule("CH3CONH2"), molecule("C6H6"), molecule("H2O"), diamond]
    for atoms in structures:
        atoms.rattle(0.03, seed=2)
    return [build_graph(structures[:3], moment.cutoff), build_graph([diamond], moment.cutoff),
            build_graph([molecular_cluster("H2O", 12)], moment.cutoff)]
