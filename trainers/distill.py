"""Distil a teacher's labels into a student: energy + force loss, validation every epoch,
best-on-validation checkpoint, history and loss-curve plot next to it."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mlffc.data.loader import GraphDataset
from mlffc.data.storage import Frames, read_frames
from mlffc.errors import MlffcError
from mlffc.io import atomic_path, write_json
from mlffc.metrics import error_metrics
from mlffc.progress import progress_bar
from mlffc.students import Student, build_student, save_student


CALIBRATION_ATOMS = 20000  # atoms of training data used to set the student's feature scales


@dataclass
class TrainConfig:
    data: str = ""
    architecture: str = "moment"
    student: dict = field(default_factory=dict)  # architecture arguments (cutoff, channels, ...)
    epochs: int = 60
    max_atoms_per_batch: int = 256
    lr: float = 3e-3
    lr_min_factor: float = 0.02
    warmup_fraction: float = 0.03
    weight_decay: float = 1e-6
    energy_weight: float = 1.0  # on (per-atom energy error)^2, eV^2
    force_weight: float = 1.0  # on (force component error)^2, (eV/Å)^2
    grad_clip: float = 10.0
    seed: int = 0
    threads: int = 0  # 0: torch's default

    @staticmethod
    def from_file(path: str | Path) -> "TrainConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MlffcError(f"training config not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        unknown = set(values) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise MlffcError(f"{path}: unknown training settings: {', '.join(sorted(unknown))}")
        return TrainConfig(**values)


def fit_energy_reference(frames: Frames, species: list[int]) -> tuple[np.ndarray, float]:
    """Per-species reference energies by least squares on composition, and the force RMS as
    the scale of the learned part (so the network's outputs are of order one)."""
    counts = np.zeros((len(frames), len(species)))
    per_frame_numbers = np.split(frames.numbers, frames.offsets[1:-1])
    for k, numbers in enumerate(per_frame_numbers):
        for column, z in enumerate(species):
            counts[k, column] = np.count_nonzero(numbers == z)
    reference, *_ = np.linalg.lstsq(counts, frames.energy, rcond=None)
    return reference, float(np.sqrt(np.mean(frames.forces**2)))


def predict(student: Student, dataset: GraphDataset, max_atoms: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Eager predictions (energy [B], forces [N, 3]) in dataset order."""
    student.eval()
    energies, forces = [], []
    for indices in dataset.batches(max_atoms):
        batch = dataset.batch(indices)
        energy, force, _ = student(*batch.graph.inputs())
        energies.append(energy.detach().numpy())
        forces.append(force.detach().numpy())
    return np.concatenate(energies), np.concatenate(forces)


def evaluate(student: Student, dataset: GraphDataset) -> dict[str, float]:
    energy, forces = predict(student, dataset)
    f = dataset.frames
    return error_metrics(energy, f.energy, f.natoms, forces, f.forces)


def train(config: TrainConfig, out_dir: str | Path) -> tuple[Student, dict]:
    out_dir = Path(out_dir)
    frames = read_frames(config.data)
    train_frames, val_frames = frames.split_named("train"), frames.split_named("val")
    if len(train_frames) == 0 or len(val_frames) == 0:
        raise MlffcError(f"{config.data} needs frames in both the train and val splits")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    species = np.unique(frames.numbers).tolist()
    student = build_student(config.architecture, species=species, **config.student)
    train_set = GraphDataset(train_frames, student.cutoff)
    val_set = GraphDataset(val_frames, student.cutoff)
    reference, scale = fit_energy_reference(train_frames, species)
    student.atomic_reference.copy_(torch.from_numpy(reference))
    student.energy_scale.fill_(scale)
    student.avg_neighbours.fill_(sum(e.shape[1] for e in train_set.edges) / train_frames.natoms.sum())
    student.calibrate(train_set.batch(train_set.batches(CALIBRATION_ATOMS, np.random.default_rng(config.seed))[0]).graph)

    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(train_set.batches(config.max_atoms_per_batch))
    total_steps = config.epochs * steps_per_epoch
    warmup = max(1, int(config.warmup_fraction * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return config.lr_min_factor + (1 - config.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    history: list[dict] = []
    best: dict = {}
    start_time = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("training", total=config.epochs, status="")
        for epoch in range(config.epochs):
            student.train()
            losses = []
            for indices in train_set.batches(config.max_atoms_per_batch, rng):
                batch = train_set.batch(indices)
                energy, forces, _ = student(*batch.graph.inputs())
                energy_loss = (((energy - batch.energy) / batch.natoms) ** 2).mean()
                force_loss = ((forces - batch.forces) ** 2).mean()
                loss = config.energy_weight * energy_loss + config.force_weight * force_loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), config.grad_clip)
                optimiser.step()
                scheduler.step()
                losses.append(loss.item())
            metrics = evaluate(student, val_set)
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                      "seconds": time.perf_counter() - start_time, **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(record)
            if not best or _score(record) < _score(best):
                best = record
                save_student(student, out_dir / "student.safetensors",
                             extra={"epoch": epoch + 1, "val": metrics, "teacher": frames.attrs.get("teacher"), "data": str(config.data)})
            write_json(out_dir / "history.json", {"history": history})
            progress.update(task, advance=1, status=f"val F-MAE {metrics['force_mae']:.4f} eV/Å, E-MAE {1e3 * metrics['energy_mae_per_atom']:.2f} meV/atom")
    write_json(out_dir / "train_config.json", asdict(config))
    plot_history(history, out_dir / "loss_curve.png")
    from mlffc.students import load_student

    best_student, _ = load_student(out_dir / "student.safetensors")
    return best_student, {"history": history, "best": best}


def _score(record: dict) -> float:
    """Model selection on validation: force MAE (eV/Å) plus energy MAE (eV/atom)."""
    return record["val_force_mae"] + record["val_energy_mae_per_atom"]


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].semilogy(epochs, [h["train_loss"] for h in history])
    axes[0].set(xlabel="epoch", ylabel="train loss", title="training loss")
    axes[1].semilogy(epochs, [h["val_force_mae"] for h in history], label="force MAE (eV/Å)")
    axes[1].semilogy(epochs, [h["val_energy_mae_per_atom"] for h in history], label="energy MAE (eV/atom)")
    axes[1].set(xlabel="epoch", title="validation")
    axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
