"""Orb teachers with seeded random weights (no downloads): derivatives of conservative models,
consistency of direct ones, charge and spin, checkpoint loading and its refusals.

Orb learns rotational symmetry from data (it is not built into the architecture), so untrained
weights are tested for the symmetries the architecture guarantees: translations, permutations
and periodic images."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from mlffc.errors import MlffcError
from mlffc.teachers import load_teacher


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny Orb calls run faster on one thread, much faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def conservative():
    return load_teacher("orb-v3-conservative-inf-omat", random_init=0, precision="float64")


@pytest.fixture(scope="module")
def direct():
    return load_teacher("orb-v3-direct-inf-omat", random_init=0, precision="float64")


@pytest.fixture(scope="module")
def omol():
    return load_teacher("orb-v3-direct-omol", random_init=0)


def cell(repeat=(2, 1, 1), seed=1):
    """A rattled, skewed (primitive fcc) Cu cell: cheap, with every stress component non-zero."""
    atoms = bulk("Cu", "fcc", a=3.6) * repeat
    atoms.rattle(0.05, seed=seed)
    return atoms


def strained(atoms, i, j, h):
    """A symmetric strain: the stress is its derivative. (An asymmetric one adds a rotation, which
    changes the energy of a model not invariant by construction.)"""
    epsilon = np.eye(3)
    epsilon[i, j] += h / 2
    epsilon[j, i] += h / 2
    copy = atoms.copy()
    copy.set_cell(atoms.cell.array @ epsilon, scale_atoms=True)
    return copy


def test_conservative_forces_are_minus_energy_gradient(conservative):
    atoms, h = cell(), 1e-4
    forces = conservative.compute([atoms]).forces
    picks = [(0, 0), (1, 2), (0, 1)]
    displaced = []
    for atom, axis in picks:
        for sign in (1, -1):
            copy = atoms.copy()
            copy.positions[atom, axis] += sign * h
            displaced.append(copy)
    energies = conservative.compute(displaced).energy.reshape(-1, 2)
    for (atom, axis), (plus, minus) in zip(picks, energies):
        assert forces[atom, axis] == pytest.approx(-(plus - minus) / (2 * h), abs=1e-6)


def test_conservative_stress_is_strain_derivative(conservative):
    atoms, h = cell(), 1e-5
    stress = conservative.compute([atoms]).stress[0]
    picks = [(0, 0), (2, 2), (0, 1), (1, 2)]
    energies = conservative.compute([strained(atoms, i, j, s) for i, j in picks for s in (h, -h)]).energy.reshape(-1, 2)
    for (i, j), (plus, minus) in zip(picks, energies):
        assert stress[i, j] == pytest.approx((plus - minus) / (2 * h) / atoms.get_volume(), abs=1e-7)
    assert np.abs(stress).min() > 1e-5  # a real test: no component vanishes by symmetry


@pytest.mark.parametrize("fixture", ["conservative", "direct"])
def test_batch_equals_single_calls(fixture, request):
    teacher = request.getfixturevalue(fixture)
    structures = [cell(), molecule("CH3OH"), cell((1, 1, 1), seed=2)]
    batch = teacher.compute(structures)
    for k, atoms in enumerate(structures):
        single = teacher.compute([atoms])
        assert batch.energy[k] == pytest.approx(single.energy[0], abs=1e-9)
        np.testing.assert_allclose(batch.split_forces()[k], single.forces, atol=1e-9)
        expected = single.stress[0] if single.stress is not None else np.zeros((3, 3))
        np.testing.assert_allclose(batch.stress[k], expected, atol=1e-10)


def test_direct_model_respects_translation_permutation_and_images(direct):
    atoms = cell()
    labels = direct.compute([atoms])
    moved = atoms.copy()
    moved.positions += [0.3, -1.1, 2.0]
    order = np.array([1, 0])
    swapped = atoms[order]
    supercell = atoms * (1, 2, 1)  # 2 images of each atom
    other = direct.compute([moved, swapped, supercell])
    assert other.energy[:2] == pytest.approx([labels.energy[0]] * 2, abs=1e-9)
    forces = other.split_forces()
    np.testing.assert_allclose(forces[0], labels.forces, atol=1e-9)
    np.testing.assert_allclose(forces[1], labels.forces[order], atol=1e-9)
    assert other.energy[2] == pytest.approx(2 * labels.energy[0], abs=1e-8)
    np.testing.assert_allclose(forces[2], np.tile(labels.forces, (2, 1)), atol=1e-8)
    np.testing.assert_allclose(other.stress[2], labels.stress[0], atol=1e-9)
    np.testing.assert_allclose(other.stress[0], labels.stress[0], atol=1e-9)


def test_ase_calculator_agrees_with_compute(conservative):
    from ase.stress import full_3x3_to_voigt_6_stress

    atoms = cell()
    labels = conservative.compute([atoms])
    atoms.calc = conservative.calculator()
    assert atoms.get_potential_energy() == pytest.approx(labels.energy[0])
    np.testing.assert_allclose(atoms.get_forces(), labels.forces)
    np.testing.assert_allclose(atoms.get_stress(), full_3x3_to_voigt_6_stress(labels.stress[0]))


def test_default_dtype_does_not_leak(conservative):
    conservative.compute([cell()])
    assert torch.get_default_dtype() == torch.float32


def test_identity_says_random_init(direct):
    source = direct.info.source
    assert source["random_init"] == 0 and "RANDOM-INIT" in source["weights"]
    assert direct.info.family == "orb-v3-direct" and direct.info.capabilities.stress


def test_unsupported_element_is_named(direct):
    with pytest.raises(MlffcError, match="element Og is not supported"):
        direct.compute([molecule("H2O") + Atoms("Og", positions=[[3.0, 0.0, 0.0]])])


def test_omol_reads_charge_and_spin(omol):
    neutral = molecule("CH3OH")
    cation = neutral.copy()
    cation.info.update(charge=1, spin=2)
    labels = omol.compute([neutral, cation])
    assert labels.stress is None and omol.info.capabilities.charge_spin
    assert abs(labels.energy[0] - labels.energy[1]) > 1e-4
    neutral.calc = omol.calculator()
    first = neutral.get_potential_energy()
    neutral.info.update(charge=1, spin=2)  # the calculator must notice
    second = neutral.get_potential_energy()
    assert second == pytest.approx(labels.energy[1], abs=1e-4) and second != pytest.approx(first, abs=1e-4)  # float32


@pytest.mark.parametrize("info, message", [
    ({"spin": 2}, "18 electrons \\(charge 0\\) need an odd spin multiplicity, got 2"),
    ({"charge": 0.5}, "atoms.info\\['charge'\\] must be an integer, got 0.5"),
    ({"spin": 0}, "spin multiplicity \\(2S\\+1\\) must be 1 or more"),
    ({"charge": 18}, "charge 18 leaves 0 electrons"),
    ({"spin": "singlet"}, "atoms.info\\['spin'\\] must be an integer"),
    ({"charge": 2, "spin": 19}, "spin multiplicity 19 needs 18 unpaired electrons; there are 16"),
])
def test_omol_refuses_impossible_charge_or_spin(omol, info, message):
    atoms = molecule("CH3OH")
    atoms.info.update(info)
    with pytest.raises(MlffcError, match=message):
        omol.compute([molecule("H2O"), atoms])


def test_omol_refuses_periodic_cells(omol):
    with pytest.raises(MlffcError, match="periodic cells are not supported"):
        omol.compute([cell()])


def test_materials_model_refuses_charge(direct):
    atoms = molecule("H2O")
    atoms.info["charge"] = -1
    with pytest.raises(MlffcError, match="charge=-1, but teacher 'orb-v3-direct-inf-omat' takes no charge or spin"):
        direct.compute([atoms])


def test_needs_weights_or_random_init():
    with pytest.raises(MlffcError, match="teacher 'orb-v2' needs weights.*orb-v2-20241011.ckpt.*--random-init"):
        load_teacher("orb-v2")
    with pytest.raises(MlffcError, match="not both"):
        load_teacher("orb-v2", weights="x.ckpt", random_init=0)


def test_deprecated_model_is_refused():
    with pytest.raises(MlffcError, match="'orb-v1' is deprecated upstream"):
        load_teacher("orb-v1")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(MlffcError, match="teacher 'orb-v3-direct-20-omat': checkpoint file not found: .*none.ckpt"):
        load_teacher("orb-v3-direct-20-omat", weights=tmp_path / "none.ckpt")


def test_unreadable_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MlffcError, match="teacher 'orb-v2': .*junk.ckpt is not a readable checkpoint"):
        load_teacher("orb-v2", weights=path)


def test_checkpoint_round_trip_and_mismatches(tmp_path):
    """The real loading path: a saved state dict loads back to the same labels; another
    architecture's weights, or weights with a head missing, are refused by name."""
    source = load_teacher("orb-v3-direct-20-omat", random_init=3)
    state = source._model.state_dict()
    path = tmp_path / "weights.ckpt"
    torch.save(state, path)
    loaded = load_teacher("orb-v3-direct-20-omat", weights=path)
    atoms = cell()
    assert loaded.compute([atoms]).energy[0] == source.compute([atoms]).energy[0]
    assert loaded.info.source["weights"]["name"] == "weights.ckpt" and "random_init" not in loaded.info.source

    with pytest.raises(MlffcError, match="'orb-v2': .*weights.ckpt does not match the orb-v2 architecture"):
        load_teacher("orb-v2", weights=path)
    headless = tmp_path / "headless.ckpt"
    torch.save({k: v for k, v in state.items() if not k.startswith("heads.forces.")}, headless)
    with pytest.raises(MlffcError, match="headless.ckpt lacks \\d+ weights of the orb-v3-direct-20-omat architecture"):
        load_teacher("orb-v3-direct-20-omat", weights=headless)


def test_registry_lists_every_upstream_model():
    from orb_models.forcefield.pretrained import ORB_PRETRAINED_MODELS

    from mlffc.teachers import orb

    assert set(orb.MODELS) | set(orb.DEPRECATED) == set(ORB_PRETRAINED_MODELS)
    assert not set(orb.MODELS) & set(orb.DEPRECATED)


def test_every_model_builds_as_listed():
    """Each named model's architecture (built with random weights) matches what the registry says."""
    from mlffc.teachers import orb

    for name, spec in orb.MODELS.items():
        teacher = load_teacher(name, random_init=0)
        model = teacher._model
        assert hasattr(model, "grad_forces_name") == (spec.architecture == "v3-conservative"), name
        assert ("confidence" in model.heads) == spec.architecture.startswith("v3"), name
        assert model.has_stress == spec.stress, name
        assert (model.model.conditioner is not None) == spec.molecular, name
        assert model.system_config.max_num_neighbors == spec.max_neighbours, name
        assert model.system_config.radius == orb.CUTOFF, name


def test_generate_crystals(direct):
    """Rattles, strains and Langevin MD of periodic cells, labelled with stress, split by group."""
    from mlffc.data.generate import generate
    from mlffc.data.sampling_config import SamplingConfig
    from mlffc.data.samplers import strain

    atoms = cell()
    frames = strain(atoms, 0.02, 2, np.random.default_rng(0))
    assert all(f.cell.volume != pytest.approx(atoms.cell.volume) for f in frames)
    np.testing.assert_allclose(frames[0].get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-12)

    seeds = [(f"bulk/{k}", cell(seed=k)) for k in range(3)]
    config = SamplingConfig(rattle_scales=(0.05,), rattles_per_scale=1, strain_scales=(0.02,), strains_per_scale=1,
                            md_temperatures=(300.0,), md_steps=2, md_interval=2,
                            duplicate_tolerance=0.0)  # two MD steps barely move the atoms: keep the frame anyway
    data = generate(seeds, direct, config)
    assert data.sampler.tolist() == ["seed", "rattle0.05", "strain0.02"] * 3 + ["md300K"] * 3
    assert sorted(data.split.tolist()) == [0] * 4 + [1] * 4 + [2] * 4  # one group each
    assert data.pbc.all() and np.abs(data.stress).min(axis=(1, 2)).all()
    assert not np.allclose(data.positions[-1], seeds[-1][1].positions)
