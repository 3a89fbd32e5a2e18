"""Does training wait for data? The fraction of each training step spent waiting for the next
batch, at the default training settings (student, max_atoms_per_batch, loader_workers), and
with other worker counts for comparison.

    .venv/bin/python bench/bench_loader.py [--data DATASET] [--steps 300] [--workers 0 1 2]

Without --data the frames are G2/S22 molecules rattled, with packed clusters and boxes of up to
1000 atoms (labels are random: a loader's cost does not depend on them). A step is what
trainers/distill.py does per batch: forward, forces, loss, backward, AdamW step."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_frames(count: int, packed: int, seed: int = 0):
    from mlffc.data.clusters import packed_molecules
    from mlffc.data.samplers import rattle
    from mlffc.data.seeds import seed_molecules
    from mlffc.data.storage import Frames

    rng = np.random.default_rng(seed)
    molecules = [atoms for _, atoms in seed_molecules()]
    structures = [rattle(molecules[k], 0.05, 1, rng)[0] for k in rng.integers(len(molecules), size=count)]
    for _ in range(packed):
        size = int(np.exp(rng.uniform(np.log(10), np.log(1000))))
        chosen = []
        while sum(len(m) for m in chosen) < size:
            chosen.append(molecules[rng.integers(len(molecules))])
        structures.append(packed_molecules(chosen, 0.8, rng, periodic=bool(rng.integers(2))))
    natoms = np.array([len(a) for a in structures])
    return Frames(natoms=natoms, numbers=np.concatenate([a.numbers for a in structures]).astype(np.uint8),
                  positions=np.concatenate([a.positions for a in structures]),
                  cell=np.stack([a.cell.array for a in structures]), pbc=np.stack([a.pbc for a in structures]),
                  energy=rng.normal(size=len(natoms)), forces=rng.normal(size=(natoms.sum(), 3)),
                  group=np.array(["g"] * len(natoms)), split=np.zeros(len(natoms), np.uint8),
                  sampler=np.array(["rattle0.05"] * len(natoms)))


def measure(dataset, config, workers: int, steps: int, warmup: int = 20) -> dict:
    """Seconds waiting for batches and seconds in training steps, over `steps` steps after `warmup`."""
    from mlffc.data.loader import BatchOrder, batch_loader
    from mlffc.students import build_student
    from mlffc.trainers.losses import TERMS, loss_sums, term_errors, weights

    torch.manual_seed(0)
    student = build_student(config.architecture, species=np.unique(dataset.frames.numbers).tolist(), **config.student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr)
    order = BatchOrder()
    rng = np.random.default_rng(0)
    order.batches = []
    while len(order.batches) < steps + warmup:
        order.batches += dataset.batches(config.max_atoms_per_batch, rng)
    order.batches = order.batches[: steps + warmup]
    loader = batch_loader(dataset, order, workers)
    term_weights = weights(config)
    wait = work = 0.0
    atoms = 0
    mark = time.perf_counter()
    for step, batch in enumerate(loader):
        ready = time.perf_counter()
        errors = term_errors(student, batch, with_hessian=False)
        sums = loss_sums(errors, config)
        loss = sum(term_weights[t] * sums[t] / max(errors[t].numel(), 1) for t in TERMS)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        done = time.perf_counter()
        if step >= warmup:
            wait += ready - mark
            work += done - ready
            atoms += len(batch.forces)
        mark = done
    return {"workers": workers, "steps": steps, "wait_s": round(wait, 3), "step_s": round(work, 3),
            "wait_fraction": round(wait / (wait + work), 4), "ms_per_step": round(1e3 * (wait + work) / steps, 2),
            "atoms_per_s": round(atoms / (wait + work))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a dataset (file, directory of shards or glob); default: synthetic")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="*", help="worker counts to compare (default: 0 and the default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mlffc.data.loader import GraphDataset
    from mlffc.data.storage import read_dataset
    from mlffc.students import build_student
    from mlffc.trainers import TrainConfig

    config = TrainConfig()
    frames = read_dataset(args.data) if args.data else synthetic_frames(20000, 200)
    cutoff = build_student(config.architecture, species=[1, 6, 7, 8], **config.student).cutoff
    start = time.perf_counter()
    dataset = GraphDataset(frames, cutoff)
    neighbour_seconds = time.perf_counter() - start
    counts = args.workers if args.workers is not None else sorted({0, config.loader_workers})
    results = {"frames": len(frames), "atoms": int(frames.natoms.sum()), "neighbour_lists_s": round(neighbour_seconds, 2),
               "torch_threads": torch.get_num_threads(), "max_atoms_per_batch": config.max_atoms_per_batch,
               "default_workers": config.loader_workers, "runs": [measure(dataset, config, w, args.steps) for w in counts]}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
