"""The Python runtime: compute against the eager student, the Verlet list against fresh lists
through an MD run, batched screening."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlffc.data.clusters import molecular_cluster
from mlffc.errors import MlffcError
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.runtime.model import CALL_ATOMS
from mlffc.runtime.neighbours import VerletList


def test_verlet_list_goes_stale_when_it_must():
    atoms = molecular_cluster("H2O", 8, periodic=True)
    verlet = VerletList(cutoff=3.0, skin=0.4)
    assert verlet.stale(atoms)
    verlet.rebuild(atoms)
    moved = atoms.copy()
    moved.positions[0] += [0.19, 0, 0]
    assert not verlet.stale(moved)
    moved.positions[0] += [0.02, 0, 0]
    assert verlet.stale(moved)  # moved beyond skin / 2
    for change in (lambda a: a.set_cell(a.cell * 1.01, scale_atoms=False), lambda a: a.numbers.__setitem__(0, 6),
                   lambda a: a.set_pbc(False), lambda a: a.positions.__setitem__((1, 1), np.nan)):
        changed = atoms.copy()
        change(changed)
        assert verlet.stale(changed)
    assert verlet.stale(atoms + Atoms("H", positions=[[0, 0, 0]]))


def test_verlet_list_graph_equals_fresh_graph():
    atoms = molecular_cluster("H2O", 27, periodic=True)
    verlet = VerletList(cutoff=5.0, skin=1.0)
    verlet.rebuild(atoms)
    atoms.rattle(0.1, seed=1)
    assert not verlet.stale(atoms)
    cached, fresh = verlet.graph(atoms), build_graph([atoms], 5.0)
    assert cached.edge_index.shape == fresh.edge_index.shape
    def by_pair(g):  # pair -> its edge vectors: the shifts depend on where each list wrapped the atoms
        i, j = g.edge_index
        vectors = (g.positions[j] - g.positions[i] + g.shifts @ g.cell[0]).double().numpy()
        pairs = {}
        for a, b, v in zip(i.tolist(), j.tolist(), vectors):
            pairs.setdefault((a, b), []).append(v)
        return pairs

    cached_pairs, fresh_pairs = by_pair(cached), by_pair(fresh)
    assert cached_pairs.keys() == fresh_pairs.keys()
    for pair, vectors in cached_pairs.items():
        assert len(vectors) == len(fresh_pairs[pair])
        for v in vectors:
            assert min(np.abs(v - w).max() for w in fresh_pairs[pair]) < 1e-4, pair
    assert (cached.edge_index[0].diff() >= 0).all()  # centre-sorted, as toolchain/graph.py lists them


@pytest.mark.slow
def test_compute_matches_eager_student_with_stress(artifact, trained_run):
    model, student = load(artifact), trained_run[1]
    structures = [molecular_cluster("H2O", 8, periodic=True), molecule("CH3CONH2")]
    structures[0].rattle(0.02, seed=2)
    result = model.compute(structures)
    energy, forces, stress = (t.detach().numpy() for t in student(*build_graph(structures, student.cutoff).inputs()))
    np.testing.assert_allclose(result["energy"], energy, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.concatenate(result["forces"]), forces, rtol=0, atol=1e-4)
    np.testing.assert_allclose(result["stress"], stress, rtol=0, atol=1e-6)
    assert np.abs(result["stress"][0]).max() > 0 and not result["stress"][1].any()


@pytest.mark.slow
@pytest.mark.parametrize("periodic", [False, True], ids=["cluster", "box"])
def test_verlet_skin_forces_equal_fresh_list_forces_in_md(artifact, periodic):
    """50 steps hot enough that the 0.3 Å skin is crossed: at every step the calculator's forces
    (cached list) equal those of a fresh neighbour list, and the list was both rebuilt and reused."""
    model = load(artifact)
    atoms = molecular_cluster("H2O", 27, periodic=periodic)
    atoms.calc = model.calculator(skin=0.3)
    thermalize_momenta(atoms, 1000, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    worst = []

    def compare():
        fresh = model.compute(atoms)
        worst.append(np.abs(atoms.get_forces() - fresh["forces"][0]).max())
        assert atoms.get_potential_energy() == pytest.approx(fresh["energy"][0], abs=1e-4)

    dynamics.attach(compare, interval=1)
    dynamics.run(50)
    verlet = atoms.calc.neighbours
    assert len(worst) == 51 and max(worst) < 1e-4
    assert verlet.rebuilds >= 3, "the run never crossed the skin: it tests nothing"
    assert verlet.steps - verlet.rebuilds >= 10, "the list was never reused"


@pytest.mark.slow
def test_calculator_refuses_bad_structures(artifact):
    calculator = load(artifact).calculator()
    atoms = molecule("H2O")
    atoms.calc = calculator
    atoms.get_forces()
    atoms.positions[0] = atoms.positions[1]
    with pytest.raises(MlffcError, match="apart"):
        atoms.get_forces()
    atoms = molecule("CH3Cl")
    atoms.calc = calculator
    with pytest.raises(MlffcError, match="element Cl is not supported"):
        atoms.get_forces()


@pytest.mark.slow
def test_screen_batches_and_reports_throughput(artifact):
    model = load(artifact)
    structures = [molecule(name) for name in ("H2O", "CH4", "C6H6", "NH3", "CH3OH")] * 3
    screened = model.screen(structures, max_atoms=20)
    single = model.compute(structures)
    np.testing.assert_allclose(screened["energy"], single["energy"], atol=1e-4)
    for a, b in zip(screened["forces"], single["forces"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    throughput = screened["throughput"]
    assert throughput["structures"] == 15 and throughput["atoms"] == sum(len(a) for a in structures)
    assert throughput["batches"] > 1 and throughput["structures_per_s"] > 0 and throughput["atoms_per_s"] > 0
    with pytest.raises(MlffcError, match="at least one"):
        model.screen([])


@pytest.mark.slow
def test_compute_splits_a_batch_into_cache_sized_calls_on_cpu(artifact):
    model = load(artifact)
    structures = [molecule(name) for name in ("H2O", "CH4", "C6H6", "NH3", "CH3OH")] * 30  # 900 atoms
    calls = []
    run = model.run
    model.run = lambda graph: calls.append(graph.positions.shape[0]) or run(graph)
    split = model.compute(structures)
    assert len(calls) > 1 and max(calls) <= CALL_ATOMS["cpu"] and sum(calls) == 900
    assert len(calls) == model.screen(structures)["throughput"]["batches"]
    whole = model.compute(structures, max_atoms=900)
    np.testing.assert_allclose(split["energy"], whole["energy"], atol=1e-4)
    np.testing.assert_allclose(np.concatenate(split["forces"]), np.concatenate(whole["forces"]), atol=1e-5)
    assert [len(f) for f in split["forces"]] == [len(a) for a in structures]
    with pytest.raises(MlffcError, match="max_atoms must be an integer >= 1, got 0"):
        model.compute(structures, max_atoms=0)
