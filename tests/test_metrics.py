"""The one difference metric: per-structure energy per atom, absolute or relative-above-1 forces,
NaN never a pass; and per-batch outputs joined in frame order."""

import math

import numpy as np
import pytest
import torch

from mlffc.data.storage import Frames
from mlffc.metrics import (FORCE_SCALE, category_of, concatenate, errors_by_category, errors_by_source, source_of,
                           worst_difference)


def _batch(energy, forces):
    return np.array(energy, float), np.array(forces, float).reshape(-1, 3)


def test_energy_is_per_atom_of_each_structure():
    ref = [_batch([0.0, 0.0], np.zeros(12))]
    out = [_batch([0.2, 0.9], np.zeros(12))]  # structures of 2 and 10 atoms
    assert worst_difference(out, ref, [np.array([2.0, 10.0])])["energy_per_atom"] == 0.1


def test_forces_absolute_or_relative_above_the_scale():
    ref = [_batch([0.0], [0.5, 0, 0, 40.0, 0, 0])]
    out = [_batch([0.0], [0.6, 0, 0, 41.0, 0, 0])]
    natoms = [np.array([2.0])]
    assert math.isclose(worst_difference(out, ref, natoms)["forces"], 1.0)  # the 40 eV/Å component, absolute
    relative = worst_difference(out, ref, natoms, relative_forces=True)["forces"]
    assert math.isclose(relative, 0.1)  # below FORCE_SCALE absolute (0.1); above it 1/40
    assert FORCE_SCALE == 1.0


def test_nan_is_a_difference_wherever_it_is():
    ref = [_batch([0.0], np.zeros(3)), _batch([0.0], np.zeros(3))]
    out = [_batch([0.0], np.zeros(3)), _batch([np.nan], [np.nan, 0, 0])]
    worst = worst_difference(out, ref, [np.array([1.0])] * 2)
    assert math.isnan(worst["energy_per_atom"]) and math.isnan(worst["forces"])
    assert not worst["forces"] <= 1.0  # so a gate written as `<= limit` fails it


def test_tensors_and_arrays_compare_alike_and_batches_join_in_order():
    a = [(torch.tensor([1.0, 2.0]), torch.zeros(3, 3)), (torch.tensor([3.0]), torch.ones(1, 3))]
    b = [(np.array([1.0, 2.0]), np.zeros((3, 3))), (np.array([3.0]), np.ones((1, 3)))]
    assert worst_difference(a, b, [np.array([1.0, 2.0]), np.array([1.0])]) == {"energy_per_atom": 0.0, "forces": 0.0}
    energy, forces = concatenate([(np.asarray(e), np.asarray(f)) for e, f in a])
    assert energy.tolist() == [1.0, 2.0, 3.0] and forces.shape == (4, 3)


def _labelled(groups, samplers, natoms):
    natoms = np.array(natoms)
    n = int(natoms.sum())
    return Frames(natoms=natoms, numbers=np.ones(n, np.uint8), positions=np.zeros((n, 3)), cell=np.zeros((len(natoms), 3, 3)),
                  pbc=np.zeros((len(natoms), 3), bool), energy=np.zeros(len(natoms)), forces=np.zeros((n, 3)),
                  group=np.array(groups), split=np.zeros(len(natoms), np.uint8), sampler=np.array(samplers))


def test_categories_come_from_the_sampler():
    assert [category_of(s) for s in ("relaxed", "md300K", "seed-md600K", "nm1000K", "rattle0.05", "cluster", "box", "strain0.01")] == [
        "equilibrium", "equilibrium", "hot", "hot", "rattled", "clusters", "liquids", "strained"]


def test_errors_by_category_and_source_select_their_own_frames_and_atoms():
    frames = _labelled(["drug-like.smi/a", "small.smi/b", "drug-like.smi/c"], ["relaxed", "rattle0.03", "md600K"], [2, 1, 3])
    energy = np.array([0.0, 3.0, 6.0])  # |dE| per atom: 0, 3, 2
    forces = np.zeros((6, 3))
    forces[2] = 1.0  # the small molecule's one atom
    by_source = errors_by_source(energy, forces, frames)
    assert source_of("drug-like.smi/a") == "drug-like" and source_of("bulk/Cu") == "bulk" and source_of("packed-7") == "packed-7"
    assert set(by_source) == {"all", "drug-like", "small"}
    assert by_source["small"]["force_mae"] == 1.0 and by_source["drug-like"]["force_mae"] == 0.0
    assert by_source["drug-like"]["energy_mae_per_atom"] == 1.0 and by_source["drug-like"]["atoms"] == 5
    assert by_source["all"]["frames"] == 3 and by_source["all"]["force_mae"] == pytest.approx(3 / 18)
    by_category = errors_by_category(energy, forces, frames)
    assert set(by_category) == {"all", "equilibrium", "rattled", "hot"}
    assert by_category["rattled"]["energy_mae_per_atom"] == 3.0 and by_category["hot"]["atoms"] == 3
