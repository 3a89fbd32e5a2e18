"""The one atom-count batcher (mlffc.structures.atom_batches) behind the runtime's compiled calls,
the teachers' model calls and the training loader: every index once, in the documented order,
within the budget unless one structure alone passes it, periodic structures apart when asked."""

import numpy as np
import pytest
from ase import Atoms
from hypothesis import given, settings, strategies as st

from mlffc.errors import MlffcError
from mlffc.structures import atom_batches, structure_batches

sizes_st = st.lists(st.integers(1, 60), max_size=40)
budget_st = st.integers(1, 120)


@settings(max_examples=300, deadline=None, database=None)
@given(sizes_st, budget_st, st.integers(1, 4), st.randoms(use_true_random=False))
def test_every_index_once_in_order_within_the_budget_and_greedy(sizes, budget, min_frames, random):
    order = list(range(len(sizes)))
    random.shuffle(order)
    batches = atom_batches(sizes, budget, order, min_frames=min_frames)
    assert [k for batch in batches for k in batch] == order  # every index once, in `order`
    for batch, following in zip(batches, batches[1:]):
        # a batch closes only when it holds min_frames and the next index would pass the budget
        assert len(batch) >= min_frames
        assert sum(sizes[k] for k in batch) + sizes[following[0]] > budget
    for batch in batches:
        # within the budget, unless min_frames forces more (with min_frames 1: one structure larger than it)
        assert len(batch) <= min_frames or sum(sizes[k] for k in batch) <= budget


@settings(max_examples=300, deadline=None, database=None)
@given(sizes_st, budget_st, st.none() | st.integers(1, 120), st.data())
def test_periodic_structures_are_batched_apart_after_the_others(sizes, budget, periodic_budget, data):
    periodic = data.draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    batches = atom_batches(sizes, budget, periodic=periodic, max_periodic_atoms=periodic_budget)
    kinds = [{periodic[k] for k in batch} for batch in batches]
    assert all(len(kind) == 1 for kind in kinds)  # one kind per batch
    flat = [k for batch in batches for k in batch]
    assert flat == [k for k in range(len(sizes)) if not periodic[k]] + [k for k in range(len(sizes)) if periodic[k]]
    for batch, (kind,) in zip(batches, kinds):
        limit = periodic_budget if kind and periodic_budget is not None else budget
        assert len(batch) == 1 or sum(sizes[k] for k in batch) <= limit


def test_a_structure_larger_than_the_budget_goes_alone():
    assert atom_batches([3, 4, 50, 2, 2], 10) == [[0, 1], [2], [3, 4]]
    assert atom_batches([50], 10) == [[0]]
    assert atom_batches([5, 5, 5], 10) == [[0, 1], [2]]  # exactly at the budget still fits


def test_min_frames_holds_a_batch_open_past_the_budget():
    assert atom_batches([8, 8, 8, 8, 8], 10, min_frames=2) == [[0, 1], [2, 3], [4]]
    assert atom_batches([2, 2, 9, 2], 10, min_frames=2) == [[0, 1], [2, 3]]


def test_order_picks_and_orders_the_indices():
    assert atom_batches([1, 2, 3, 4], 5, order=[3, 0, 2]) == [[3, 0], [2]]
    assert atom_batches([1, 2, 3, 4], 5, order=np.array([1, 0])) == [[1, 0]]


def test_empty_input_gives_no_batches():
    assert atom_batches([], 10) == []
    assert atom_batches(np.zeros(0, int), 10, order=np.zeros(0, int), periodic=[]) == []
    assert structure_batches([], 10) == []


def test_structure_batches_keep_periodic_cells_apart_with_their_own_budget():
    molecule, crystal = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), Atoms("Cu4", cell=[3.6] * 3, pbc=True)
    structures = [crystal, molecule, crystal, molecule, crystal]
    assert structure_batches(structures, 8) == [[1, 3], [0, 2], [4]]
    assert structure_batches(structures, 8, max_periodic_atoms=4) == [[1, 3], [0], [2], [4]]
    assert structure_batches(structures, 8, order=[4, 3, 2, 1, 0]) == [[3, 1], [4, 2], [0]]


@pytest.mark.parametrize("name, setting, bad", [("max_atoms", {"max_atoms": 0}, "0"), ("max_atoms", {"max_atoms": True}, "True"),
                                                 ("max_atoms", {"max_atoms": 2.5}, "2.5"),
                                                 ("max_periodic_atoms", {"max_periodic_atoms": -1}, "-1"),
                                                 ("min_frames", {"min_frames": 0}, "0")])
def test_a_bad_budget_is_refused_by_name(name, setting, bad):
    arguments = {"max_atoms": 10} | setting
    with pytest.raises(MlffcError, match=f"{name} must be an integer >= 1, got {bad}"):
        atom_batches([1, 2], **arguments)
