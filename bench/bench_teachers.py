"""Teacher cost: ms per call (energy + forces) and atoms/s at ~20, ~300 and ~1000 atoms, one
structure per call and batched, for ANI-1x (one network and the 8-network ensemble, float32 and
float64) and each Orb architecture family (v2, v3 conservative, v3 direct; seeded random weights,
float32 as published). Systems are water clusters (`molecular_cluster('H2O', n)`).

    .venv/bin/python bench/bench_teachers.py [--threads 1] [--write docs/teachers.md]

Each ANI measurement uses a teacher warmed up at that size: FeNNol pads inputs to 1.2x the
largest batch it has seen, so a small call after a large one costs as much as the large one.
With --write, the table replaces the part of the file between the bench markers."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

SIZES = (7, 100, 333)  # water molecules: 21, 300 and 999 atoms
BATCH = {7: 16, 100: 4}  # structures per batched call; at ~1000 atoms there is no overhead left to share
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and XLA")
    parser.add_argument("--write", type=Path, help="markdown file whose bench section to replace")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of repeats per measurement")
    args = parser.parse_args()
    single_thread = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["XLA_FLAGS"] = single_thread if args.threads == 1 else ""  # before JAX starts
    import torch

    torch.set_num_threads(args.threads)
    rows = bench_ani(args.budget) + bench_orb(args.budget)
    table = markdown(rows, args.threads)
    print(table)
    if args.write:
        text = args.write.read_text()
        head, rest = text.split(START, 1)
        args.write.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
        print(f"wrote {args.write}", file=sys.stderr)


def systems(molecules: int, count: int) -> list:
    from mlffc.data.clusters import molecular_cluster

    return [molecular_cluster("H2O", molecules, seed=k) for k in range(count)]


def timed_ms(teacher, structures, budget: float) -> float:
    """Median wall time of `teacher.compute(structures)` after a warm-up call (it compiles FeNNol)."""
    teacher.compute(structures)
    samples, deadline = [], time.perf_counter() + budget
    while len(samples) < 3 or (time.perf_counter() < deadline and len(samples) < 20):
        start = time.perf_counter()
        teacher.compute(structures)
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def measure(name: str, make_teacher, budget: float, fresh_per_size: bool) -> list[dict]:
    rows, teacher = [], None
    for molecules in SIZES:
        row = {"teacher": name, "atoms": 3 * molecules}
        for mode, count in (("single", 1), ("batched", BATCH.get(molecules))):
            if count is None:
                continue
            if teacher is None or fresh_per_size:
                teacher = make_teacher()
            structures = systems(molecules, count)
            ms = timed_ms(teacher, structures, budget)
            row[mode] = (count, ms, 3 * molecules * count / ms * 1e3)
            print(f"{name:>34} {3 * molecules:5d} atoms x{count:<3d} {ms:9.1f} ms", file=sys.stderr)
        rows.append(row)
    return rows


def bench_ani(budget: float) -> list[dict]:
    from mlffc.teachers import load_teacher
    from mlffc.teachers.registry import bundled_files

    one = f"fennol:{bundled_files('ani1x')[0]}"
    rows = []
    for label, spec in (("ANI-1x, 1 network", one), ("ANI-1x, 8-network ensemble", "ani1x")):
        for precision in ("float32", "float64"):
            rows += measure(f"{label}, {precision}", lambda: load_teacher(spec, precision=precision), budget, True)
    return rows


def bench_orb(budget: float) -> list[dict]:
    from mlffc.teachers import load_teacher

    rows = []
    for label, name in (("orb-v2", "orb-v2"), ("orb-v3 conservative (inf, omat)", "orb-v3-conservative-inf-omat"),
                        ("orb-v3 direct (inf, omat)", "orb-v3-direct-inf-omat")):
        teacher = load_teacher(name, random_init=0)
        rows += measure(f"{label}, float32, random init", lambda: teacher, budget, False)
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    import jax
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0]
    lines = [
        f"Measured {date.today().isoformat()} on {cpu} ({os.cpu_count()} cores, load average {load:.1f} at the end), "
        f"{threads} thread(s); torch {torch.__version__}, jax {jax.__version__}. Energy + forces per call, "
        "median of repeats after warm-up; batched: B structures of that size in one call.",
        "",
        "| teacher | atoms | single: ms/call | single: atoms/s | batched: B | batched: ms/call | batched: atoms/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        count, ms, rate = row["single"]
        batched = row.get("batched")
        tail = f"{batched[0]} | {batched[1]:.1f} | {batched[2]:,.0f}" if batched else "- | - | -"
        lines.append(f"| {row['teacher']} | {row['atoms']} | {ms:.1f} | {rate:,.0f} | {tail} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
