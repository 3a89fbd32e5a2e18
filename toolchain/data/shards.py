"""A dataset as shard files, made anywhere: in this process, in a local process pool, or on a
Dask cluster. Shard I of N is a pure function of the settings, the seed and I (data.generate), so
a shard can run on any machine; each is written atomically, finished shards are skipped on a
re-run (refused when their settings differ), and an interrupted run redoes only the unfinished."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ase import Atoms

from mlffc.data.generate import generate, seeds_sha256
from mlffc.data.sampling_config import SamplingConfig
from mlffc.data.storage import SHARD_NAME, read_attrs, write_frames
from mlffc.errors import MlffcError
from mlffc.progress import console, progress_bar, quiet
from mlffc.teachers import Teacher, load_teacher

SETTINGS = ("teacher", "sampler", "plan")  # attributes that must match for a finished shard to count
_SHARD_FILE = re.compile(r"shard-(\d+)-of-(\d+)\.h5")
_TEACHERS: dict["TeacherSpec", Teacher] = {}  # one loaded teacher per worker process


@dataclass(frozen=True)
class TeacherSpec:
    """How a worker process loads the teacher (load_teacher's arguments)."""

    name: str
    precision: str | None = None
    weights: str | None = None
    random_init: int | None = None

    def load(self) -> Teacher:
        if self not in _TEACHERS:
            _TEACHERS[self] = load_teacher(self.name, self.precision, self.weights, self.random_init)
        return _TEACHERS[self]


@dataclass(frozen=True)
class ShardJob:
    """Everything one shard needs, picklable for process pools and Dask."""

    teacher: TeacherSpec
    seeds: list[tuple[str, Atoms]]
    config: SamplingConfig
    holdout: tuple[float, float]
    count: int
    out_dir: Path

    def path(self, index: int) -> Path:
        return self.out_dir / SHARD_NAME.format(index=index, count=self.count)

    def settings(self, teacher: Teacher) -> dict:
        """The attributes (SETTINGS) a finished shard of this job carries, as stored (JSON)."""
        plan = {"seeds": len(self.seeds), "seeds_sha256": seeds_sha256(self.seeds), "holdout": list(self.holdout),
                "shards": self.count}
        return json.loads(json.dumps({"teacher": asdict(teacher.info), "sampler": asdict(self.config), "plan": plan}))


def finished_shards(job: ShardJob, teacher: Teacher) -> set[int]:
    """Indices of the shards already written with this job's settings. MlffcError if the
    directory holds shards of another shard count or another setting."""
    done = set()
    for path in sorted(job.out_dir.glob("shard-*.h5")) if job.out_dir.is_dir() else []:
        match = _SHARD_FILE.fullmatch(path.name)
        if match is None or int(match[2]) != job.count:
            raise MlffcError(f"{job.out_dir} holds {path.name}, not a shard of {job.count}; use another --out")
        check_settings(path, job.settings(teacher))
        done.add(int(match[1]))
    return done


def check_settings(path: Path, expected: dict) -> None:
    """MlffcError naming the first setting in which the finished file `path` differs."""
    stored = read_attrs(path)
    for key in SETTINGS:
        if stored.get(key) != expected[key]:
            changed = _first_difference(stored.get(key), expected[key])
            raise MlffcError(f"{path} was made with other {key} settings ({key}{changed}); it is kept: rerun with "
                             "the same settings, use another --out, or --overwrite to replace it")


def run_shard(job: ShardJob, index: int) -> dict:
    """Make and write shard `index` (in whatever process runs it); returns its summary."""
    start = time.perf_counter()
    teacher = job.teacher.load()
    frames = generate(job.seeds, teacher, job.config, job.holdout, index, job.count)
    path = job.path(index)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run of this shard
        stale.unlink(missing_ok=True)
    write_frames(path, frames)
    return {"index": index, "frames": len(frames), "atoms": int(frames.natoms.sum()),
            "labelled": frames.attrs["shard"]["labelled"], "seconds": time.perf_counter() - start}


def run_shards(job: ShardJob, indices: list[int], workers: int = 1, scheduler: str | None = None,
               executor: concurrent.futures.Executor | None = None) -> list[dict]:
    """Run the shards `indices` of `job` and return their summaries: in this process (workers=1),
    in a pool of `workers` processes, on the Dask scheduler at `scheduler`, or on any
    concurrent.futures `executor` (a Dask client's `get_executor()`, say)."""
    if executor is None and scheduler is None and workers <= 1:
        summaries = []
        for index in indices:
            console.rule(f"shard {index + 1} of {job.count}")
            summaries.append(run_shard(job, index))
        return summaries
    if executor is not None:
        return _gather(executor, job, indices)
    if scheduler is not None:
        from distributed import Client

        with Client(scheduler) as client:
            return _gather(client.get_executor(pure=False), job, indices)
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=worker_setup) as pool:
        return _gather(pool, job, indices)


def worker_setup() -> None:
    """One thread per worker process (processes give the parallelism), no progress output."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    quiet()


def _run_in_worker(job: ShardJob, index: int) -> dict:
    worker_setup()
    return run_shard(job, index)


def _gather(executor: concurrent.futures.Executor, job: ShardJob, indices: list[int]) -> list[dict]:
    summaries = []
    with progress_bar() as progress:
        task = progress.add_task("shards", total=len(indices), status="")
        futures = [executor.submit(_run_in_worker, job, index) for index in indices]
        for future in concurrent.futures.as_completed(futures):
            summaries.append(future.result())
            frames = sum(s["frames"] for s in summaries)
            progress.update(task, advance=1, status=f"{frames:,} frames")
    return sorted(summaries, key=lambda s: s["index"])


def _first_difference(stored, expected, where: str = "") -> str:
    """Where two JSON values first differ, e.g. `.source.precision: 'float32' != 'float64'`."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for key in sorted(set(stored) | set(expected)):
            if stored.get(key) != expected.get(key):
                return _first_difference(stored.get(key), expected.get(key), f"{where}.{key}")
    return f"{where}: {stored!r} != {expected!r}"
