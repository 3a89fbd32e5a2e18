import numpy as np
import pytest
from ase.build import molecule

from mlffc.errors import MlffcError
from mlffc.teachers import load_teacher
from mlffc.units import HARTREE_TO_EV


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


def test_per_member_forces_give_the_same_mean(teacher):
    from mlffc.teachers.fennol import FennolTeacher
    from mlffc.teachers.registry import bundled_ani1x

    atoms = molecule("CH3CONH2")
    atoms.rattle(0.05, seed=2)
    members = FennolTeacher(bundled_ani1x(), name="ani1x", force_spread=True).compute([atoms])
    merged = teacher.compute([atoms])
    np.testing.assert_allclose(members.forces, merged.forces, atol=1e-8)
    assert members.energy[0] == pytest.approx(merged.energy[0], abs=1e-8)
    assert members.forces_spread.shape == (len(atoms),) and (members.forces_spread > 0).all()
    assert merged.forces_spread is None
