"""Batches of graphs for training and evaluation: neighbour lists computed once per frame, batches
packed by total atom count (frames of similar size together) so a batch costs about the same
whatever the molecule sizes, and a torch DataLoader whose worker processes build the next
batches while the current one trains."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from mlffc.data.storage import Frames
from mlffc.graph import Graph, local_positions, neighbour_list
from mlffc.structures import atom_batches

# Workers are forked to inherit the cached neighbour lists; they run numpy and torch only, never
# JAX, so JAX's warning about forking after it started its threads (labelling in the same
# process, as `mlffc demo` does) does not apply to them.
warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)


@dataclass
class Batch:
    graph: Graph
    energy: torch.Tensor  # [B] float64, eV
    forces: torch.Tensor  # [N, 3] float32, eV/Å
    natoms: torch.Tensor  # [B] float64
    stress: torch.Tensor  # [B, 3, 3] float32, eV/Å^3 (zeros where unlabelled)
    stress_mask: torch.Tensor  # [B] bool: frames with stress labels
    hessian_direction: torch.Tensor  # [N, 3] float32 (zeros where unlabelled)
    hessian_product: torch.Tensor  # [N, 3] float32, eV/Å^2, the teacher's H v
    hessian_mask: torch.Tensor  # [N] bool: atoms of frames with Hessian labels
    atomic_energy: torch.Tensor  # [N] float64, eV, the teacher's per-atom partition (zeros where unlabelled)
    atomic_mask: torch.Tensor  # [N] bool: atoms with atomic-energy labels


class GraphDataset(torch.utils.data.Dataset):
    """Frames with cached neighbour lists for one cutoff; `dataset[indices]` is the Batch of
    those frames (what a DataLoader's worker builds)."""

    def __init__(self, frames: Frames, cutoff: float):
        self.frames = frames
        self.offsets = frames.offsets
        self.edges, self.shifts = [], []
        self.positions = np.empty(frames.positions.shape, np.float32)  # local_positions: float32 keeps their precision
        for k in range(len(frames)):
            start, stop = self.offsets[k], self.offsets[k + 1]
            periodic = bool(frames.pbc[k].all())
            local = local_positions(frames.positions[start:stop], frames.cell[k], periodic)
            self.positions[start:stop] = local
            i, j, s = neighbour_list(local, frames.cell[k], periodic, cutoff)
            self.edges.append(np.stack([i, j]))
            self.shifts.append(s)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, indices) -> Batch:
        return self.batch(indices)

    def batch(self, indices) -> Batch:
        f = self.frames
        atom_slices = [slice(self.offsets[k], self.offsets[k + 1]) for k in indices]
        natoms = f.natoms[indices]
        starts = np.concatenate([[0], np.cumsum(natoms)[:-1]])
        periodic = f.pbc[indices].all(axis=1)
        cells = np.where(periodic[:, None, None], f.cell[indices], 0.0)
        graph = Graph(
            positions=torch.from_numpy(np.concatenate([self.positions[s] for s in atom_slices])),
            species=torch.from_numpy(np.concatenate([f.numbers[s] for s in atom_slices]).astype(np.int64)),
            edge_index=torch.from_numpy(np.concatenate([self.edges[k] + o for k, o in zip(indices, starts)], axis=1)),
            shifts=torch.from_numpy(np.concatenate([self.shifts[k] for k in indices])),
            cell=torch.from_numpy(cells.astype(np.float32)),
            batch=torch.from_numpy(np.repeat(np.arange(len(indices)), natoms)),
        )
        def per_atom(array):
            if array is None:
                return torch.zeros(int(natoms.sum()), 3), torch.zeros(int(natoms.sum()), dtype=torch.bool)
            values = np.concatenate([array[s] for s in atom_slices]).astype(np.float32)
            return torch.from_numpy(np.nan_to_num(values)), torch.from_numpy(np.isfinite(values).all(axis=1))

        hessian_direction, hessian_mask = per_atom(f.hessian_direction)
        hessian_product, _ = per_atom(f.hessian_product)
        stress = np.zeros((len(indices), 3, 3)) if f.stress is None else f.stress[indices]
        atomic = (np.full(int(natoms.sum()), np.nan) if f.atomic_energy is None
                  else np.concatenate([f.atomic_energy[s] for s in atom_slices]))
        return Batch(
            graph=graph,
            energy=torch.from_numpy(f.energy[indices].astype(np.float64)),
            forces=torch.from_numpy(np.concatenate([f.forces[s] for s in atom_slices]).astype(np.float32)),
            natoms=torch.from_numpy(natoms.astype(np.float64)),
            stress=torch.from_numpy(np.nan_to_num(stress).astype(np.float32)),
            stress_mask=torch.from_numpy(periodic & np.isfinite(stress).all(axis=(1, 2)) & (f.stress is not None)),
            hessian_direction=hessian_direction,
            hessian_product=hessian_product,
            hessian_mask=hessian_mask,
            atomic_energy=torch.from_numpy(np.nan_to_num(atomic).astype(np.float64)),
            atomic_mask=torch.from_numpy(np.isfinite(atomic)),
        )

    def batches(self, max_atoms: int, rng: np.random.Generator | None = None, min_frames: int = 1) -> list[np.ndarray]:
        """Index batches of at most max_atoms atoms, unless that leaves fewer than min_frames
        frames (one per data-parallel process); the last batch may take a runt (up to 1.5x
        max_atoms). Without rng: in frame order. With rng: frames
        shuffled, then packed within size buckets (atom counts within a factor of two), so
        batches fill up to max_atoms, then the batches shuffled."""
        natoms = self.frames.natoms
        order = None
        if rng is not None:
            order = rng.permutation(len(self))
            order = order[np.argsort(np.log2(natoms[order]).astype(int), kind="stable")]
        groups = [np.array(batch) for batch in atom_batches(natoms, max_atoms, order, min_frames=min_frames)]
        if len(groups) > 1 and (len(groups[-1]) < min_frames or 2 * int(natoms[groups[-1]].sum()) < max_atoms):
            # a runt (too few frames for every process, or under half full) joins the last batch:
            # then the plan is the same for any number of processes when frames are under max_atoms / 2
            groups[-2:] = [np.concatenate(groups[-2:])]
        return groups if rng is None else [groups[k] for k in rng.permutation(len(groups))]


class BatchOrder(torch.utils.data.Sampler):
    """What a loader yields: `batches[start:]` (global batches of frame indices), each cut to
    this process's share `batch[rank::world]`. Set `batches` and `start` before each pass, so
    one loader (and its workers) serves every epoch and a resumed run starts mid-epoch."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world
        self.batches: list[np.ndarray] = []
        self.start = 0

    def __iter__(self):
        return (batch[self.rank :: self.world] for batch in self.batches[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start)


def batch_loader(dataset: GraphDataset, order: BatchOrder, workers: int) -> torch.utils.data.DataLoader:
    """Batches of `dataset` in `order`, built by `workers` processes ahead of use (0: in this
    process). Workers persist across passes and inherit the cached neighbour lists (fork)."""
    return torch.utils.data.DataLoader(
        dataset, sampler=order, batch_size=None, collate_fn=_as_built, num_workers=workers,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
        multiprocessing_context="fork" if workers else None,
    )


def _as_built(batch: Batch) -> Batch:
    return batch
