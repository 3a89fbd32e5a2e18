"""Distil a teacher's labels into a student.

One loop for one process or many (torchrun, DDP on gloo): AdamW, warm-up then cosine or plateau
schedule, gradient clipping, EMA weights (what is validated and saved), early stopping, TensorBoard
and a console progress bar. The full training state is saved after every epoch, so an interrupted run resumes from the end
of its last completed epoch as if it had not stopped.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mlffc import metrics
from mlffc.data.loader import BatchOrder, GraphDataset, batch_loader
from mlffc.data.storage import Frames, fit_element_energies, read_dataset
from mlffc.errors import MlffcError
from mlffc.io import write_json
from mlffc.metrics import error_metrics
from mlffc.plots import parity_figure, pyplot, save_figure
from mlffc.progress import progress_bar
from mlffc.students import Student, build_student, load_student, save_student
from mlffc.trainers.config import TrainConfig
from mlffc.trainers.losses import TERMS, loss_sums, term_errors, weights
from mlffc.trainers.state import load_state, save_state as write_state

CALIBRATION_ATOMS = 20000  # atoms of training data used to set the student's feature scales
STATE_FILE = "train_state.safetensors"  # trainers/state.py: no pickle
LEGACY_STATE_FILE = "train_state.pt"  # pickled, by older releases: refused
CHECKPOINT = "student.safetensors"


def fit_energy_reference(frames: Frames, species: list[int]) -> tuple[np.ndarray, float]:
    """Per-species reference energies by least squares on composition, and the force RMS as
    the scale of the learned part (so the network's outputs are of order one)."""
    return fit_element_energies(frames, species), float(np.sqrt(np.mean(frames.forces**2)))


def predict(student: Student, dataset: GraphDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eager predictions (energy [B], forces [N, 3], stress [B, 3, 3]) in dataset order."""
    student.eval()
    return metrics.predict(lambda graph: student(*graph.inputs()), metrics.frame_graphs(dataset))


def predict_frames(student: Student, frames: Frames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return predict(student, GraphDataset(frames, student.cutoff))


def evaluate(student: Student, dataset: GraphDataset) -> dict[str, float]:
    energy, forces, _ = predict(student, dataset)
    f = dataset.frames
    return error_metrics(energy, f.energy, f.natoms, forces, f.forces)


def trained_families(frames: Frames, config: TrainConfig) -> list[str]:
    """Scaffold families the student has seen in training (its own data's and, when it continues
    from a checkpoint, that one's): data made to fine-tune it keeps them out of held-out splits."""
    from mlffc.data.mutate import parent_group

    families = frames.attrs.get("families", {})
    seen = {families[parent_group(g)] for g in set(frames.group[frames.split == 0].tolist()) if parent_group(g) in families}
    if config.init:
        seen |= set(load_student(config.init)[1].get("trained_families", []))
    return sorted(seen)


def initial_student(config: TrainConfig, species: list[int]) -> Student:
    """The checkpoint `config.init` to continue from: its architecture, size, reference energies
    and feature scales are kept (a pretrained student specialised to new molecules, or the
    previous round of a distillation loop). The data's elements must be among its species."""
    if config.student:
        raise MlffcError(f"init {config.init} fixes the student; leave the config's student settings empty "
                         f"(given: {', '.join(sorted(config.student))})")
    student, _ = load_student(config.init)  # a path or a bundled pretrained name
    missing = sorted(set(species) - set(student.species))
    if missing:
        raise MlffcError(f"the data holds elements {missing} that the student {config.init} was not built for "
                         f"(it has {student.species}); train from scratch instead")
    return student.train()


class _Distributed:
    """Rank and world size under torchrun (gloo), or a single process."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def total(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(values)
        return values



def train(config: TrainConfig, out_dir: str | Path, restart: bool = False, stop_after_steps: int | None = None) -> tuple[Student, dict]:
    """Train (or resume) into out_dir; returns the best (EMA) student and the history.
    stop_after_steps ends the run early after that many optimiser steps in total, state saved."""
    out_dir = Path(out_dir)
    ranks = _Distributed()
    frames = read_dataset(config.data)
    train_frames, val_frames = frames.split_named("train"), frames.split_named("val")
    if len(train_frames) == 0 or len(val_frames) == 0:
        raise MlffcError(f"{config.data} needs frames in both the train and val splits")
    check_finite_labels(frames.select(frames.split < 2), config.data)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    student, train_set, val_set = prepared_student(config, np.unique(frames.numbers).tolist(), train_frames, val_frames)
    run = _Run(config, student, train_set, ranks, out_dir / STATE_FILE)
    run.resume(out_dir, restart)

    writer = _tensorboard(out_dir, config) if ranks.main else None
    if ranks.main:
        config.write(out_dir / "train_config.yaml")
    with progress_bar() as progress:
        task = progress.add_task("training", total=config.epochs, completed=run.state["epoch"], status="")
        while run.state["epoch"] < config.epochs:
            if not run.train_epoch(train_frames, stop_after_steps):
                run.save()
                break
            record, improved = run.end_epoch(val_set)
            if ranks.main:
                if improved:
                    save_student(run.ema.module, out_dir / CHECKPOINT, extra={
                        "epoch": record["epoch"], "val": {k[4:]: v for k, v in record.items() if k.startswith("val_")},
                        "teacher": frames.attrs.get("teacher"), "data": str(config.data),
                        "trained_families": trained_families(frames, config)})
                write_json(out_dir / "history.json", {"history": run.state["history"]})
                _log_epoch(writer, record, run.ema.module, val_set, run.state["epoch"], config.epochs)
            run.save()
            progress.update(task, advance=1, status=f"val F-MAE {record['val_force_mae']:.4f} eV/Å, "
                                                    f"E-MAE {1e3 * record['val_energy_mae_per_atom']:.2f} meV/atom")
            if config.early_stopping_patience and run.state["stale_epochs"] >= config.early_stopping_patience:
                break
    if writer is not None:
        writer.close()
    if ranks.main and run.state["history"]:
        plot_history(run.state["history"], out_dir / "loss_curve.png")
    best_student = load_student(out_dir / CHECKPOINT)[0] if (out_dir / CHECKPOINT).exists() else run.ema.module
    return best_student, {"history": run.state["history"], "best": run.state["best"], "steps": run.state["step"]}


def prepared_student(config: TrainConfig, species: list[int], train_frames: Frames,
                     val_frames: Frames) -> tuple[Student, GraphDataset, GraphDataset]:
    """The student to train, with the graphs of both splits at its cutoff: `config.init`'s as it
    is, or a new one whose reference energies, energy scale and feature scales come from the
    training split."""
    if config.init:
        student = initial_student(config, species)
        return student, GraphDataset(train_frames, student.cutoff), GraphDataset(val_frames, student.cutoff)
    student = build_student(config.architecture, species=species, **config.student)
    train_set, val_set = GraphDataset(train_frames, student.cutoff), GraphDataset(val_frames, student.cutoff)
    reference, scale = fit_energy_reference(train_frames, species)
    student.atomic_reference.copy_(torch.from_numpy(reference))
    student.energy_scale.fill_(scale)
    student.avg_neighbours.fill_(sum(e.shape[1] for e in train_set.edges) / train_frames.natoms.sum())
    student.calibrate(train_set.batch(train_set.batches(CALIBRATION_ATOMS, np.random.default_rng(config.seed))[0]).graph)
    return student, train_set, val_set


class _Run:
    """What one training run carries between steps and epochs (student, EMA, optimiser, schedules,
    random state, loop position), saved as one state file and restored from it."""

    def __init__(self, config: TrainConfig, student: Student, train_set: GraphDataset, ranks: _Distributed, state_path: Path):
        self.config, self.student, self.train_set, self.ranks, self.state_path = config, student, train_set, ranks, state_path
        if ranks.world > 1:
            # the double backward lays out some weights' gradients transposed ([1, n] with strides
            # [1, 1]); DDP's buckets want the parameter's own strides, so hand them over in that layout
            for parameter in student.parameters():
                parameter.register_hook(lambda grad, strides=parameter.stride(): grad if grad.stride() == strides
                                        else grad.clone(memory_format=torch.contiguous_format))
        self.model = torch.nn.parallel.DistributedDataParallel(student) if ranks.world > 1 else student
        self.optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = len(train_set.batches(config.max_atoms_per_batch, min_frames=ranks.world))
        warmup = max(1, int(config.warmup_fraction * config.epochs * steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, _lr_factor(config, warmup, config.epochs * steps_per_epoch))
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimiser, factor=0.5, patience=config.plateau_patience)
        self.ema = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.rng = np.random.default_rng(config.seed)
        self.state = {"epoch": 0, "position": 0, "step": 0, "batches": None, "history": [], "best": {}, "stale_epochs": 0}
        self.term_weights = weights(config)
        self.with_hessian = config.hessian_weight > 0 and train_set.frames.hessian_product is not None
        self.with_atomic = config.atomic_energy_weight > 0 and train_set.frames.atomic_energy is not None
        self.order = BatchOrder(ranks.rank, ranks.world)
        self.loader = batch_loader(train_set, self.order, config.loader_workers)
        self.start_time = time.perf_counter()

    def resume(self, out_dir: Path, restart: bool) -> None:
        """Continue from the state file in out_dir unless `restart`; refuse a pickled state or one
        saved with other settings, naming what differs."""
        if (out_dir / LEGACY_STATE_FILE).exists() and not self.state_path.exists() and not restart:
            raise MlffcError(f"{out_dir / LEGACY_STATE_FILE} is a pickled state of an older mlffc, which is not loaded "
                             f"(unpickling a file runs code); --restart to start the run over")
        if not self.state_path.exists() or restart:
            return
        saved = load_state(self.state_path)
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise MlffcError(f"{self.state_path} is not an mlffc training state; --restart to start the run over")
        now = asdict(self.config)
        if saved["config"] != now:
            differ = sorted(k for k in set(saved["config"]) | set(now) if saved["config"].get(k) != now.get(k))
            changes = ", ".join(f"{k}: {saved['config'].get(k)!r} there, {now.get(k)!r} now" for k in differ)
            raise MlffcError(f"{out_dir} holds a run with other settings ({changes}); use another --out, or --restart to overwrite it")
        self.student.load_state_dict(saved["student"])
        self.ema.load_state_dict(saved["ema"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.plateau.load_state_dict(saved["plateau"])
        self.rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        self.state = saved["loop"]
        self.start_time -= self.state["history"][-1]["seconds"] if self.state["history"] else 0.0

    def save(self) -> None:
        if self.ranks.main:
            write_state(self.state_path, {
                "config": asdict(self.config), "student": self.student.state_dict(), "ema": self.ema.state_dict(),
                "optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                "plateau": self.plateau.state_dict(), "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "loop": self.state,
            })

    def train_epoch(self, train_frames: Frames, stop_after_steps: int | None) -> bool:
        """Optimiser steps to the end of the current epoch (from where a resumed run stood); False
        when `stop_after_steps` ended it early. A non-finite loss or gradient stops the run, naming
        the batch's frames."""
        config, state, ranks = self.config, self.state, self.ranks
        if state["batches"] is None:
            batches = self.train_set.batches(config.max_atoms_per_batch, self.rng, min_frames=ranks.world)
            state["batches"], state["position"], state["sums"] = batches, 0, []
        self.student.train()
        self.order.batches, self.order.start = state["batches"], state["position"]
        for batch in self.loader:
            errors = term_errors(self.model, batch, self.with_hessian, self.with_atomic)
            counts = ranks.total(torch.tensor([float(errors[t].numel()) for t in TERMS]))
            sums = loss_sums(errors, config)
            loss = sum(self.term_weights[t] * sums[t] / max(counts[k].item(), 1.0) for k, t in enumerate(TERMS)) * ranks.world
            if ranks.total(torch.tensor([0.0 if torch.isfinite(loss) else 1.0])).item():
                raise MlffcError(non_finite_loss(frames_of(state, train_frames), state, sums))
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), config.grad_clip)
            if not torch.isfinite(norm):  # a finite loss can still overflow its gradient: no step
                raise MlffcError(non_finite_loss(frames_of(state, train_frames), state, sums, what="the gradient of the training loss"))
            self.optimiser.step()
            self.scheduler.step()
            self.ema.update_parameters(self.student)
            state["sums"].append([s.item() for s in ranks.total(torch.stack([s.detach() for s in sums.values()]))] + counts.tolist())
            state["position"] += 1
            state["step"] += 1
            if stop_after_steps is not None and state["step"] >= stop_after_steps:
                return False
        return True

    def end_epoch(self, val_set: GraphDataset) -> tuple[dict, bool]:
        """Validate the EMA student, record the epoch, and say whether it is the best so far."""
        state = self.state
        record = _epoch_record(state, self.ema.module, val_set, self.scheduler, self.start_time, self.term_weights)
        if self.config.schedule == "plateau":
            self.plateau.step(validation_score(record))
        state["history"].append(record)
        state["epoch"] += 1
        state["batches"] = None
        improved = not state["best"] or validation_score(record) < validation_score(state["best"])
        state["stale_epochs"] = 0 if improved else state["stale_epochs"] + 1
        if improved:
            state["best"] = record
        return record, improved


def check_finite_labels(frames: Frames, data) -> None:
    """Refuse train or val frames with a NaN or infinite position, energy, force or stress, naming
    them: one would make every later weight NaN (the force scale alone is fitted over all frames)."""
    atom_frame = np.repeat(np.arange(len(frames)), frames.natoms)
    bad = ~np.isfinite(frames.energy)
    for values in (frames.positions, frames.forces):
        np.logical_or.at(bad, atom_frame, ~np.isfinite(values).all(axis=1))
    if frames.stress is not None:
        bad |= ~np.isfinite(frames.stress.reshape(len(frames), -1)).all(axis=1)
    if bad.any():
        named = ", ".join(f"{frames.group[k]} ({frames.sampler[k]})" for k in np.flatnonzero(bad)[:5])
        raise MlffcError(f"{data}: {int(bad.sum())} train/val frame(s) with NaN or infinite positions or labels: {named}; "
                         f"see `mlffc data validate {data}`")


def frames_of(state: dict, frames: Frames) -> str:
    """The frames of the current training batch, by index in the train split and group."""
    indices = [int(k) for k in state["batches"][state["position"]]]
    named = ", ".join(f"{k} ({frames.group[k]}, {frames.sampler[k]})" for k in indices[:8])
    return named + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


def non_finite_loss(frames: str, state: dict, sums: dict, what: str = "training loss") -> str:
    """The error of a non-finite `what` (the loss, or its gradient): where, which terms, what to do."""
    bad = [t for t, value in sums.items() if not torch.isfinite(value)]
    return (f"{what} is not finite at epoch {state['epoch'] + 1}, step {state['step'] + 1} (terms: "
            f"{', '.join(bad) or 'all finite: the student diverged'}) on the train-split frames {frames}; check those "
            f"frames' labels (mlffc data validate) or lower lr; nothing from this step was saved")


def _lr_factor(config: TrainConfig, warmup: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "plateau":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return config.lr_min_factor + (1 - config.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _epoch_record(state: dict, student: Student, val_set: GraphDataset, scheduler, start_time: float, term_weights: dict) -> dict:
    sums = np.array(state["sums"]).sum(axis=0)
    totals, counts = sums[: len(TERMS)], sums[len(TERMS) :]
    train_terms = {t: float(totals[k] / counts[k]) for k, t in enumerate(TERMS) if counts[k]}
    loss = sum(term_weights[t] * value for t, value in train_terms.items())
    metrics = evaluate(student, val_set)
    return {"epoch": state["epoch"] + 1, "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - start_time,
            "train_loss": float(loss), **{f"train_{t}": v for t, v in train_terms.items()}, **{f"val_{k}": v for k, v in metrics.items()}}


def validation_score(record: dict) -> float:
    """Model selection on validation: force MAE (eV/Å) plus energy MAE (eV/atom)."""
    return record["val_force_mae"] + record["val_energy_mae_per_atom"]


def _tensorboard(out_dir: Path, config: TrainConfig):
    if not config.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


def _log_epoch(writer, record: dict, student: Student, val_set: GraphDataset, epoch: int, epochs: int) -> None:
    if writer is None:
        return
    for key, value in record.items():
        if key not in ("epoch", "seconds"):
            writer.add_scalar(key.replace("_", "/", 1), value, epoch)
    if epoch % 10 == 0 or epoch == epochs:
        energy, forces, _ = predict(student, val_set)
        writer.add_figure("val/parity", parity_figure(energy, forces, val_set.frames, f"validation, epoch {epoch}"), epoch)


def plot_history(history: list[dict], path: Path) -> None:
    plt = pyplot()

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].semilogy(epochs, [h["train_loss"] for h in history])
    axes[0].set(xlabel="epoch", ylabel="train loss", title="training loss")
    axes[1].semilogy(epochs, [h["val_force_mae"] for h in history], label="force MAE (eV/Å)")
    axes[1].semilogy(epochs, [h["val_energy_mae_per_atom"] for h in history], label="energy MAE (eV/atom)")
    axes[1].set(xlabel="epoch", title="validation")
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path)
