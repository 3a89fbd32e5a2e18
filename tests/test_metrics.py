"""The one difference metric: per-structure energy per atom, absolute or relative-above-1 forces,
NaN never a pass; and per-batch outputs joined in frame order."""

import math

import numpy as np
import torch

from mlffc.metrics import FORCE_SCALE, concatenate, worst_difference


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
