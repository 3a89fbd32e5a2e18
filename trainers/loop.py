"""`mlffc distill`: one command from seeds to a student trusted on chemistry it never saw.

generate + label (shards, resumable) -> train -> rounds of an on-policy loop: the student runs
its own Langevin MD on training molecules and packed systems at several temperatures, the
teacher labels the visited frames, the frames where the student is least trustworthy join the
data (old data kept), and training continues from the last weights. Every step's output is a
file in the work directory, so an interrupted loop resumes where it stopped; `distill.json`
records every round (frames added, MD stability, validation and test errors by category).

Selection: `error` labels every candidate with the teacher and keeps those where the student's
force error is largest (the teacher is cheap: ANI labels ~10^4 atoms/s); `spread` keeps those
where the teacher's own ensemble disagrees most (for a teacher costlier to query than to run
once more); `random` is the control.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from mlffc.errors import MlffcError
from mlffc.graph import BATCH_ATOMS
from mlffc.io import atomic_path, write_json
from mlffc.progress import console, progress_bar
from mlffc.trainers.config import TrainConfig

SELECTIONS = ("error", "spread", "random")
RECORD = "distill.json"


@dataclass
class RoundConfig:
    """One round of the on-policy loop."""

    molecules: int = 200  # training molecules the student simulates (random each round)
    packed: int = 8  # packed clusters and periodic boxes of training molecules the student simulates
    packed_atoms: tuple[int, int] = (30, 300)
    temperatures: tuple[float, ...] = (300.0, 600.0)  # K, Langevin
    md_steps: int = 200
    md_interval: int = 20  # a candidate every N steps
    timestep_fs: float = 0.5
    select: int = 2000  # frames added per round
    selection: str = "error"  # error | spread | random
    epochs: int = 6  # training epochs of the round, from the previous round's weights
    lr_factor: float = 0.5  # the round's learning rate: the first training's times this

    def __post_init__(self):
        self.temperatures, self.packed_atoms = tuple(self.temperatures), tuple(self.packed_atoms)
        if self.selection not in SELECTIONS:
            raise MlffcError(f"round selection must be one of {', '.join(SELECTIONS)}, not {self.selection!r}")
        positive = {"md_steps": self.md_steps, "md_interval": self.md_interval, "select": self.select,
                    "epochs": self.epochs, "timestep_fs": self.timestep_fs, "lr_factor": self.lr_factor}
        bad = [f"{k} = {v}" for k, v in positive.items() if not v > 0]
        if bad or self.md_interval > self.md_steps:
            raise MlffcError(f"round settings must be positive with md_interval <= md_steps: {', '.join(bad) or 'md_interval'}")
        if self.molecules < 0 or self.packed < 0 or not all(t > 0 for t in self.temperatures) or not self.temperatures:
            raise MlffcError("round molecules and packed must be >= 0 and temperatures positive (at least one)")


@dataclass
class DistillConfig:
    """A recipe: teacher, seeds, sampling, training, rounds (YAML; docs/training.md)."""

    teacher: str = "ani1x"
    seeds: str = "molecules"  # as `mlffc generate --seeds`
    on_problem: str = "skip"
    holdout: tuple[float, float] = (0.1, 0.1)  # val and test fractions of the seed families
    sampling: dict = field(default_factory=dict)  # SamplingConfig settings
    shards: int = 4  # the initial data as shard files (resumable; `workers` at once)
    workers: int = 2
    train_processes: int = 1  # data-parallel training processes (torchrun, one thread each) when above 1
    train: dict = field(default_factory=dict)  # TrainConfig settings of the first training
    rounds: int = 2
    round: dict = field(default_factory=dict)  # RoundConfig settings
    seed: int = 0

    @staticmethod
    def from_file(path: str | Path) -> "DistillConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MlffcError(f"distillation config not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise MlffcError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(values, dict):
            raise MlffcError(f"{path} must hold a mapping of settings, not {type(values).__name__}")
        unknown = set(values) - {f.name for f in fields(DistillConfig)}
        if unknown:
            raise MlffcError(f"{path}: unknown distillation settings: {', '.join(sorted(unknown))}")
        config = DistillConfig(**values)
        config.check()
        return config

    def check(self) -> None:
        """Every nested setting valid before any work starts."""
        from mlffc.data.sampling_config import SamplingConfig

        for name, cls, values in (("sampling", SamplingConfig, self.sampling), ("train", TrainConfig, self.train),
                                  ("round", RoundConfig, self.round)):
            if not isinstance(values, dict):
                raise MlffcError(f"'{name}' must be a mapping of settings")
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise MlffcError(f"unknown {name} settings: {', '.join(sorted(unknown))}")
        self.round_config()
        self.train_config("")
        if self.rounds < 0 or self.shards < 1 or self.workers < 1 or self.train_processes < 1:
            raise MlffcError(f"rounds must be >= 0, shards, workers and train_processes >= 1 (got {self.rounds}, "
                             f"{self.shards}, {self.workers}, {self.train_processes})")
        if len(self.holdout) != 2 or not all(0 < h < 0.5 for h in self.holdout):
            raise MlffcError(f"holdout must be two fractions (val, test) in (0, 0.5), got {self.holdout}")

    def sampling_config(self):
        from mlffc.data.sampling_config import SamplingConfig

        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.sampling.items()}
        return SamplingConfig(**{"seed": self.seed, **values})

    def train_config(self, data: str) -> TrainConfig:
        return TrainConfig(**{"seed": self.seed, **self.train, "data": data})

    def round_config(self) -> RoundConfig:
        return RoundConfig(**self.round)

    def write(self, path: Path) -> None:
        import yaml

        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(self))), sort_keys=False))


class StudentLabeller:
    """A student with a teacher's `compute` (energies and forces of a list of molecules), so the
    teacher-driven samplers (data.samplers.gas_md) run the student's own MD."""

    def __init__(self, student, max_atoms: int = BATCH_ATOMS):
        self.student, self.max_atoms = student.eval(), max_atoms

    def compute(self, structures):
        from mlffc.graph import build_graph
        from mlffc.structures import structure_batches
        from mlffc.teachers.base import Labels

        if not all(np.all(np.isfinite(s.positions)) for s in structures):
            raise MlffcError("the student's MD reached non-finite positions")
        energy, forces = np.empty(len(structures)), [None] * len(structures)
        for batch in structure_batches(structures, self.max_atoms):
            e, f, _ = self.student(*build_graph([structures[k] for k in batch], self.student.cutoff).inputs())
            energy[batch] = e.detach().numpy()
            for k, part in zip(batch, np.split(f.detach().numpy().astype(np.float64), np.cumsum([len(structures[k]) for k in batch])[:-1])):
                forces[k] = part
        forces = np.concatenate(forces)
        if not (np.all(np.isfinite(forces)) and np.all(np.isfinite(energy))):
            raise MlffcError("the student's energy or forces are not finite on its own MD frames")
        return Labels(natoms=np.array([len(s) for s in structures]), energy=energy, forces=forces)

    def calculator(self):
        """An ASE calculator (periodic boxes, one system per call)."""
        from mlffc.teachers.base import TeacherCalculator

        return TeacherCalculator(self)


def run_distill(config: DistillConfig, workdir: Path, fresh: bool = False) -> dict:
    """The whole loop in `workdir` (resumes what is there unless `fresh`); returns the record."""
    from mlffc.data.shards import ShardJob, TeacherSpec, finished_shards, run_shards
    from mlffc.data.storage import read_dataset
    from mlffc.trainers.distill import CHECKPOINT

    workdir = Path(workdir)
    data_dir, runs_dir = workdir / "data", workdir / "runs"
    record_path = workdir / RECORD
    if fresh:
        for path in [*data_dir.glob("*.h5"), record_path]:
            path.unlink(missing_ok=True)  # a first run with --fresh has no record yet
    saved = workdir / "distill_config.yaml"
    if saved.exists() and not fresh:
        previous = DistillConfig.from_file(saved)
        if asdict(previous) != asdict(config):
            raise MlffcError(f"{workdir} holds a distillation with other settings ({saved}); use another workdir or --fresh")
    workdir.mkdir(parents=True, exist_ok=True)
    config.write(saved)
    record = json.loads(record_path.read_text()) if record_path.exists() else {"rounds": []}

    spec = TeacherSpec(config.teacher)
    teacher = spec.load()
    seeds = cached_seeds(config, teacher.info.elements, workdir / "seeds")
    console.rule(f"1. data: {len(seeds)} seeds, {config.shards} shards")
    job = ShardJob(spec, seeds, config.sampling_config(), tuple(config.holdout), config.shards, data_dir)
    pending = [k for k in range(config.shards) if k not in finished_shards(job, teacher)]
    if pending:
        run_shards(job, pending, config.workers)
    rounds = config.round_config()
    base = config.train_config(str(data_dir))
    for number in range(config.rounds + 1):
        run_dir = runs_dir / f"round-{number:02d}"
        if number > 0:
            round_data = data_dir / f"round-{number:02d}.h5"
            previous = runs_dir / f"round-{number - 1:02d}" / CHECKPOINT
            if not round_data.exists():
                console.rule(f"round {number}: the student's own MD")
                added = on_policy_frames(previous, read_dataset(data_dir), teacher, rounds, config.seed + number)
                _write_round(round_data, added, read_dataset(data_dir).attrs, number)
        if any(r["round"] == number for r in record["rounds"]) and (run_dir / CHECKPOINT).exists():
            continue  # trained and recorded by an earlier run of the loop
        console.rule(f"round {number}: training" + (f" from round {number - 1}" if number else ""))
        train_config = base if number == 0 else replace(
            base, init=str(runs_dir / f"round-{number - 1:02d}" / CHECKPOINT), student={}, epochs=rounds.epochs,
            lr=base.lr * rounds.lr_factor, warmup_fraction=0.0, seed=base.seed + number)
        started = time.perf_counter()
        student, result = train_in_processes(train_config, run_dir, config.train_processes)
        entry = _round_entry(number, student, read_dataset(data_dir), result, time.perf_counter() - started,
                             data_dir / f"round-{number:02d}.h5")
        record["rounds"] = [r for r in record["rounds"] if r["round"] != number] + [entry]
        write_json(record_path, record)
    # round data comes from training molecules, so every round is scored on the same validation frames
    best = min((r for r in record["rounds"] if r["round"] <= config.rounds), key=_round_validation_score)
    record["best"] = str(runs_dir / f"round-{best['round']:02d}" / CHECKPOINT)
    write_json(record_path, record)
    return record


def train_in_processes(config: TrainConfig, run_dir: Path, processes: int):
    """train() in this process, or in `processes` data-parallel ones (torchrun, gloo, one thread
    each: on a few cores, processes scale where intra-op threads on small tensors do not)."""
    import os
    import subprocess
    import sys

    from mlffc.students import load_student
    from mlffc.trainers.distill import CHECKPOINT, train, validation_score

    if processes == 1:
        return train(config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "loop_train_config.yaml"
    replace(config, threads=1).write(config_path)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", str(processes), "--master_port", str(29500 + os.getpid() % 1000),
               "-m", "mlffc", "train", str(config_path), "--out", str(run_dir)]
    finished = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if finished.returncode != 0:
        raise MlffcError(f"data-parallel training in {run_dir} failed (exit {finished.returncode}); rerun to resume it")
    history = json.loads((run_dir / "history.json").read_text())["history"]
    best = min(history, key=validation_score)
    return load_student(run_dir / CHECKPOINT)[0], {"history": history, "best": best}


def cached_seeds(config: DistillConfig, elements, directory: Path) -> list[tuple[str, Atoms]]:
    """The recipe's seeds, embedded once: an extxyz file keyed by the seeds setting (RDKit
    conformers cost ~0.1 s per drug-like molecule; a resumed loop reads them back). Returned as
    read back from the file, so a first run and a resumed one see the same seeds to the bit (the
    file rounds positions) and their shards the same seeds hash."""
    import ase.io

    key = zlib.crc32(json.dumps([config.seeds, config.on_problem, sorted(elements)]).encode())
    path = directory / f"seeds-{key:08x}.extxyz"
    if not path.exists():
        _embed_seeds(config, elements, path)
    return [(atoms.info.pop("group"), atoms) for atoms in ase.io.read(path, index=":")]


def _embed_seeds(config: DistillConfig, elements, path: Path) -> None:
    import ase.io

    from mlffc.data.seeds import load_seeds

    seeds, problems = load_seeds(config.seeds, elements, config.on_problem, workers=config.workers)
    if problems:
        console.print(f"[yellow]skipped {len(problems)} seed entries[/] (first: {problems[0]})")
    with atomic_path(path) as tmp:
        for group, atoms in seeds:
            atoms.info["group"] = group
        ase.io.write(tmp, [atoms for _, atoms in seeds], format="extxyz")


def on_policy_frames(checkpoint: Path, frames, teacher, rounds: RoundConfig, seed: int):
    """Frames the student visits in its own MD, labelled by the teacher, the `rounds.select`
    least trustworthy kept: training molecules (their teacher-relaxed seed frames as starts) and
    packed systems of them, at each temperature."""
    from mlffc.data.clusters import packed_molecules
    from mlffc.data.generate import label
    from mlffc.data.sampling_config import SamplingConfig
    from mlffc.data.samplers import crystal_md, gas_md
    from mlffc.data.validate import MAX_ROBUST_Z, energy_robust_z
    from mlffc.structures import closest_pair
    from mlffc.students import load_student

    student, _ = load_student(checkpoint)
    labeller = StudentLabeller(student)
    rng = np.random.default_rng(seed)
    train = frames.split_named("train")
    starts = [k for k in range(len(train)) if train.sampler[k] == "seed" and not train.pbc[k].any()
              and not str(train.group[k]).startswith("packed/")]
    chosen = rng.choice(starts, min(rounds.molecules, len(starts)), replace=False) if starts else []
    molecules = [(str(train.group[k]), train.atoms(k)) for k in chosen]
    md = SamplingConfig(md_steps=rounds.md_steps, md_interval=rounds.md_interval, md_timestep=rounds.timestep_fs, seed=seed)
    candidates: list[tuple[str, str, Atoms]] = []
    started, unstable = 0, 0
    with progress_bar() as progress:
        task = progress.add_task("student MD", total=len(rounds.temperatures) * (1 + rounds.packed), status="")
        for temperature in rounds.temperatures:
            progress.update(task, status=f"{len(molecules)} molecules, {temperature:g} K")
            if molecules:
                try:
                    trajectories = gas_md([atoms for _, atoms in molecules], labeller, temperature, md, rng)
                except MlffcError as error:  # the student diverged: the round keeps what it has
                    console.print(f"[yellow]student MD of molecules at {temperature:g} K stopped: {error}[/]")
                    trajectories = [[] for _ in molecules]
                expected = rounds.md_steps // rounds.md_interval
                for (group, _), trajectory in zip(molecules, trajectories):
                    started += 1
                    unstable += len(trajectory) < expected
                    candidates += [(group, f"student-md{temperature:g}K", f) for f in trajectory]
            progress.advance(task)
            for index in range(rounds.packed):
                periodic = index % 2 == 1
                target = int(round(np.exp(rng.uniform(*np.log(rounds.packed_atoms)))))
                pool, chosen_molecules, size = [a for _, a in molecules], [], 0
                while pool and size < target:
                    chosen_molecules.append(pool[rng.integers(len(pool))])
                    size += len(chosen_molecules[-1])
                if not chosen_molecules:
                    progress.advance(task)
                    continue
                system = packed_molecules(chosen_molecules, 0.8, rng, periodic, 0.05)
                group = f"packed/train/round-{seed}-{temperature:g}K-{index}"
                try:
                    trajectory = crystal_md(system, labeller.calculator(), temperature, md, rng) if periodic else \
                        gas_md([system], labeller, temperature, md, rng)[0]
                except MlffcError:
                    trajectory = []
                started += 1
                unstable += len(trajectory) < rounds.md_steps // rounds.md_interval
                candidates += [(group, "box" if periodic else "cluster", f) for f in trajectory]
                progress.advance(task)
    candidates = [c for c in candidates if closest_pair(c[2], md.min_distance) is None]
    if not candidates:
        raise MlffcError("the student's MD produced no frames to label")
    labelled = label(candidates, teacher)
    labelled = labelled.select(energy_robust_z(labelled) <= MAX_ROBUST_Z)  # what validation would call broken
    score = selection_score(labelled, labeller, rounds.selection, rng)
    keep = np.argsort(-score, kind="stable")[: rounds.select]
    chosen_frames = labelled.select(np.sort(keep))
    chosen_frames.attrs = {"round": {"added": len(chosen_frames), "candidates": len(labelled), "trajectories": started, "unstable": unstable,
                                     "selection": rounds.selection, "score_kept_min": float(score[keep].min()),
                                     "score_median": float(np.median(score))}}
    return chosen_frames


def selection_score(frames, labeller: StudentLabeller, selection: str, rng: np.random.Generator) -> np.ndarray:
    """Per frame, how little the student is to be trusted there (larger: less)."""
    if selection == "random":
        return rng.uniform(size=len(frames))
    if selection == "spread":
        if frames.energy_spread is None:
            raise MlffcError("selection 'spread' needs an ensemble teacher (energy spread labels)")
        return frames.energy_spread / np.sqrt(frames.natoms)
    predicted = labeller.compute([frames.atoms(k) for k in range(len(frames))]).forces
    error = np.linalg.norm(predicted - frames.forces, axis=1)
    return np.array([error[a:b].mean() for a, b in zip(frames.offsets[:-1], frames.offsets[1:])])


def _write_round(path: Path, frames, attrs: dict, number: int) -> None:
    from mlffc.data.storage import SPLITS, write_frames

    frames.split = np.zeros(len(frames), dtype=np.uint8)  # training molecules only
    frames.attrs = {**{k: attrs[k] for k in ("units", "teacher") if k in attrs}, **frames.attrs,
                    "splits": {name: sorted(set(frames.group.tolist())) if name == "train" else [] for name in SPLITS}}
    write_frames(path, frames)
    console.print(f"round {number}: {len(frames)} frames added of {frames.attrs['round']['candidates']} candidates "
                  f"({frames.attrs['round']['unstable']} of {frames.attrs['round']['trajectories']} trajectories ended early)")


def _round_validation_score(entry: dict) -> float:
    from mlffc.trainers.distill import validation_score

    val = entry["val"]["all"]
    return validation_score({"val_force_mae": val["force_mae"], "val_energy_mae_per_atom": val["energy_mae_per_atom"]})


def _round_entry(number: int, student, frames, result: dict, seconds: float, round_data: Path) -> dict:
    from mlffc.data.storage import read_attrs
    from mlffc.metrics import errors_by_category, errors_by_source
    from mlffc.trainers.distill import predict_frames

    entry = {"round": number, "frames": len(frames), "train_seconds": seconds, "best_epoch": result["best"].get("epoch")}
    if round_data.exists():
        entry["added"] = read_attrs(round_data)["round"]
    for split in ("val", "test"):
        part = frames.split_named(split)
        energy, forces, stress = predict_frames(student, part)
        entry[split] = errors_by_category(energy, forces, part, stress)
        entry[f"{split}_by_source"] = errors_by_source(energy, forces, part, stress)
    return entry
