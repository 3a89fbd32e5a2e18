"""The training loader: batches packed by atom count cover every frame once per epoch, and
worker processes build exactly the batches the training process would."""

import numpy as np
import torch

from mlffc.data.loader import BatchOrder, GraphDataset, batch_loader
from mlffc.data.storage import Frames


def frames_of_sizes(sizes, seed=0) -> Frames:
    rng = np.random.default_rng(seed)
    natoms = np.array(sizes)
    n = int(natoms.sum())
    positions = np.concatenate([rng.uniform(0, 1.2 * k ** (1 / 3) + 1, (k, 3)) for k in sizes])
    return Frames(natoms=natoms, numbers=rng.choice([1, 6, 8], n).astype(np.uint8), positions=positions,
                  cell=np.zeros((len(sizes), 3, 3)), pbc=np.zeros((len(sizes), 3), bool), energy=rng.normal(size=len(sizes)),
                  forces=rng.normal(size=(n, 3)), group=np.array(["g"] * len(sizes)), split=np.zeros(len(sizes), np.uint8),
                  sampler=np.array(["seed"] * len(sizes)))


def test_every_frame_once_per_epoch_in_batches_of_similar_size():
    sizes = np.random.default_rng(1).integers(3, 300, 400)
    dataset = GraphDataset(frames_of_sizes(sizes), cutoff=3.0)
    rng = np.random.default_rng(0)
    for min_frames in (1, 2):
        batches = dataset.batches(256, rng, min_frames=min_frames)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(sizes)))
        for batch in batches:
            assert len(batch) >= min_frames
            assert sizes[batch].sum() <= 256 or len(batch) <= 2 * min_frames
            assert np.ptp(np.log2(sizes[batch]).astype(int)) <= 2  # neighbouring size buckets only
    assert [b.tolist() for b in dataset.batches(256, np.random.default_rng(5))] == \
        [b.tolist() for b in dataset.batches(256, np.random.default_rng(5))]
    fill = np.mean([sizes[b].sum() / 256 for b in dataset.batches(256, rng) if sizes[b].sum() <= 256])
    assert fill > 0.7


def test_workers_build_the_batches_the_training_process_would():
    dataset = GraphDataset(frames_of_sizes(np.random.default_rng(2).integers(3, 40, 60)), cutoff=3.0)
    order = BatchOrder(rank=1, world=2)
    order.batches, order.start = dataset.batches(100, np.random.default_rng(0), min_frames=2), 3
    expected = [dataset.batch(batch[1::2]) for batch in order.batches[3:]]
    loader = batch_loader(dataset, order, workers=1)
    for _ in range(2):  # persistent workers serve a second pass
        built = list(loader)
        assert len(built) == len(expected) == len(order)
        for got, want in zip(built, expected):
            assert torch.equal(got.graph.edge_index, want.graph.edge_index)
            assert torch.equal(got.graph.positions, want.graph.positions) and torch.equal(got.forces, want.forces)
