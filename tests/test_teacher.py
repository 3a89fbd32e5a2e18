import numpy as np
import pytest
from ase.build import molecule

from mlffc.data.clusters import molecular_cluster
from mlffc.errors import MlffcError
from mlffc.teachers import available_teachers, load_teacher
from mlffc.teachers.registry import bundled_files
from mlffc.units import HARTREE_TO_EV


@pytest.fixture(scope="module")
def one_network():
    """One ANI-1x network, through `fennol:PATH` as any FeNNol model: cheaper to compile."""
    return load_teacher(f"fennol:{bundled_files('ani1x')[0]}")


@pytest.fixture(scope="module")
def per_member():
    """ANI-1x with one backward per member, the reference for the merged ensemble."""
    from mlffc.teachers.fennol import FennolTeacher

    return FennolTeacher(bundled_files("ani1x"), name="ani1x", force_spread=True)


def water_box(count=8, seed=1):
    """A rattled periodic water box (3 atoms per 31 Å^3)."""
    atoms = molecular_cluster("H2O", count, seed=seed, periodic=True)
    atoms.rattle(0.02, seed=seed)
    return atoms


def test_forces_match_finite_differences(teacher, rng):
    atoms = molecule("CH3OH")
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    forces = teacher.compute([atoms]).forces
    h = 1e-4
    for atom, axis in [(0, 0), (1, 2), (4, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        energies = teacher.compute([plus, minus]).energy
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-5)


def test_energy_is_in_ev_and_mean_of_ensemble(teacher):
    labels = teacher.compute([molecule("CH4")])
    # ANI-1x methane is about -40.5 Hartree
    assert labels.energy[0] / HARTREE_TO_EV == pytest.approx(-40.5, abs=0.05)
    assert 0 < labels.energy_spread[0] < 0.1


def test_batch_equals_single_calls(teacher):
    structures = [molecule("H2O"), molecule("C6H6"), molecule("NH3")]
    batch = teacher.compute(structures)
    for k, atoms in enumerate(structures):
        single = teacher.compute([atoms])
        assert batch.energy[k] == pytest.approx(single.energy[0], abs=1e-8)
        np.testing.assert_allclose(batch.split_forces()[k], single.forces, atol=1e-8)


def test_ase_calculator_agrees_with_compute(teacher):
    atoms = molecule("CH3CHO")
    atoms.calc = teacher.calculator()
    labels = teacher.compute([atoms])
    assert atoms.get_potential_energy() == pytest.approx(labels.energy[0])
    np.testing.assert_allclose(atoms.get_forces(), labels.forces)


def test_unsupported_element_is_named(teacher):
    with pytest.raises(MlffcError, match="element Cl is not supported"):
        teacher.compute([molecule("CH3Cl")])


def test_nan_position_is_refused(teacher):
    atoms = molecule("H2O")
    atoms.positions[1, 2] = np.nan
    with pytest.raises(MlffcError, match="atom 1 is NaN"):
        teacher.compute([atoms])


def test_overlapping_atoms_hint_at_units(teacher):
    atoms = molecule("H2O")
    atoms.positions *= 0.05  # nm typed as Å
    with pytest.raises(MlffcError, match="must be in Å"):
        teacher.compute([atoms])


def test_partial_periodicity_is_refused(teacher):
    atoms = molecule("H2O", cell=[10, 10, 10], pbc=[True, True, False])
    with pytest.raises(MlffcError, match="partial periodicity"):
        teacher.compute([atoms])


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(MlffcError, match="model file not found: .*nothing.fnx"):
        load_teacher(f"fennol:{tmp_path / 'nothing.fnx'}")


def test_unknown_teacher_name():
    with pytest.raises(MlffcError, match="unknown teacher 'ani9'"):
        load_teacher("ani9")


def test_not_an_atoms_object(teacher):
    with pytest.raises(MlffcError, match="expected an ase.Atoms"):
        teacher.compute([np.zeros((3, 3))])


def test_per_member_forces_give_the_same_mean(teacher, per_member):
    atoms = molecule("CH3CONH2")
    atoms.rattle(0.05, seed=2)
    members = per_member.compute([atoms])
    merged = teacher.compute([atoms])
    np.testing.assert_allclose(members.forces, merged.forces, atol=1e-8)
    assert members.energy[0] == pytest.approx(merged.energy[0], abs=1e-8)
    assert members.forces_spread.shape == (len(atoms),) and (members.forces_spread > 0).all()
    assert merged.forces_spread is None


def test_periodic_ensemble_merged_equals_per_member(teacher, per_member):
    """The merged ensemble's one backward pass gives the members' mean forces and stress."""
    atoms = water_box()
    members, merged = per_member.compute([atoms]), teacher.compute([atoms])
    assert merged.energy[0] == pytest.approx(members.energy[0], abs=1e-8)
    np.testing.assert_allclose(merged.forces, members.forces, atol=1e-8)
    np.testing.assert_allclose(merged.stress, members.stress, atol=1e-10)
    assert merged.energy_spread[0] == pytest.approx(members.energy_spread[0], abs=1e-10)


def test_periodic_stress_is_strain_derivative(one_network):
    """ASE's convention: stress = dE/dstrain / volume, positive under tension."""
    atoms, h = water_box(), 1e-5
    picks = [(0, 0), (2, 2), (0, 1), (1, 2)]
    strained = []
    for i, j in picks:
        for sign in (1, -1):
            epsilon = np.eye(3)
            epsilon[i, j] += sign * h
            copy = atoms.copy()
            copy.set_cell(atoms.cell.array @ epsilon, scale_atoms=True)
            strained.append(copy)
    energies = one_network.compute(strained).energy.reshape(-1, 2)  # the larger call first: one compilation
    stress = one_network.compute([atoms]).stress[0]
    for (i, j), (plus, minus) in zip(picks, energies):
        assert stress[i, j] == pytest.approx((plus - minus) / (2 * h) / atoms.get_volume(), abs=1e-8)
    assert np.abs(stress).min() > 1e-4


def test_periodic_batch_equals_single_calls(one_network):
    """Periodic and molecular structures in one call: labelled apart, stress zero for molecules."""
    structures = [water_box(8), molecule("CH3OH"), water_box(8, seed=2)]
    batch = one_network.compute(structures)
    for k, atoms in enumerate(structures):
        single = one_network.compute([atoms])
        assert batch.energy[k] == pytest.approx(single.energy[0], abs=1e-8)
        np.testing.assert_allclose(batch.split_forces()[k], single.forces, atol=1e-8)
        np.testing.assert_allclose(batch.stress[k], single.stress[0] if single.stress is not None else 0, atol=1e-10)
    assert single.stress is not None and not batch.stress[1].any()


def test_float32_on_request(one_network):
    single = load_teacher(f"fennol:{bundled_files('ani1x')[0]}", precision="float32")
    atoms = molecule("C6H6")
    low, high = single.compute([atoms]), one_network.compute([atoms])
    assert low.energy.dtype == np.float64 and single.info.source["precision"] == "float32"
    assert 0 < abs(low.energy[0] - high.energy[0]) < 1e-3
    np.testing.assert_allclose(low.forces, high.forces, atol=1e-3)


def test_warm_up_avoids_recompiling(one_network):
    """Padding: after a warm-up at the largest batch (atoms and structures), smaller batches reuse
    the compiled code."""
    one_network.warm_up([molecular_cluster("H2O", 20), molecule("CH4"), molecule("CH4")])
    compiled = one_network._evaluate._cache_size()
    one_network.compute([molecular_cluster("H2O", 7), molecule("CH4")])
    assert one_network._evaluate._cache_size() == compiled


def test_ani1ccx_is_bundled(teacher):
    ccx = load_teacher("ani1ccx")
    methane = molecule("CH4")
    energy = ccx.compute([methane]).energy[0]
    assert energy / HARTREE_TO_EV == pytest.approx(-40.5, abs=0.05)
    assert energy != pytest.approx(teacher.compute([methane]).energy[0], abs=1e-3)
    assert ccx.info.source["members"] == 8 and ccx.info.capabilities.uncertainty


def test_listing_matches_the_loaded_teacher(teacher):
    entry = next(e for e in available_teachers() if e.name == "ani1x")
    assert entry.elements.split() == list(teacher.info.elements)
    assert entry.cutoff == pytest.approx(teacher.info.cutoff) and entry.capabilities == teacher.info.capabilities


def test_charge_is_refused_by_a_neutral_teacher(teacher):
    atoms = molecule("NH3")
    atoms.info["charge"] = 1
    with pytest.raises(MlffcError, match="charge=1, but teacher 'ani1x' takes no charge or spin"):
        teacher.compute([atoms])


def test_orb_options_are_refused_for_fennol():
    with pytest.raises(MlffcError, match="weights and random-init are for Orb models"):
        load_teacher("ani1x", random_init=0)
