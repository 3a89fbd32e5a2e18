"""Batched throughput and memory of a compiled artifact on 1 thread (issue 14, "Batched throughput"):

1. batch scaling: time per structure of `CompiledModel.compute(list)` and `CompiledModel.screen`
   for 1 to 64 distinct water clusters of ~30 and of ~300 atoms (flat = linear in batch size),
   and of `screen` on 64 of them against its `max_atoms` (what CALL_ATOMS in toolchain/runtime/model.py is chosen by);
2. atom scaling: ms per `compute` call (checks and neighbour list included) and µs/atom for
   water clusters and periodic water boxes of ~30 to ~10,000 atoms, with the call split into
   structure checks, neighbour list (`build_graph`) and the compiled model;
3. memory: the peak RSS increase of a fresh process over its RSS before the first call, per size.

Each atom-scaling size runs in its own subprocess so that its peak RSS is its own. Times are
medians over repeats of wall time (`time.perf_counter`) and of the calling thread's CPU time
(`time.thread_time`: steadier on a shared machine, since time spent waiting for a core is not
counted). `uptime` is recorded before and after. Writes bench/out/throughput/throughput.json,
prints a markdown table, and with --write DOC puts it into DOC between the bench markers.

    .venv/bin/python bench/bench_throughput.py [--artifact ARTIFACT] [--write docs/runtime.md]

Without --artifact it compiles the bundled pretrained student ani1x-moment for the cpu target
(`mlffc.compiler.compile_student`, default passes) into bench/out/throughput/artifact.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from bench_runtime import write_between_markers
from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.structures import check_structures

HERE = Path(__file__).parent
OUT = HERE / "out" / "throughput"
BEGIN, END = "<!-- bench_throughput:begin -->", "<!-- bench_throughput:end -->"
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
BATCH_WATERS = (10, 100)  # ~30 and ~300 atoms per structure
ATOM_WATERS = (10, 100, 333, 1000, 3333)  # 30, 300, 999, 3000, 9999 atoms
MAX_ATOMS = (64, 256, 1024, 4096)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(fn, repeats: int, warmup: int = 1, budget_s: float = 10.0) -> dict:
    """Median wall and thread-CPU ms of `fn` over up to `repeats` calls (at least 3) after
    `warmup`, stopping early once `budget_s` is spent."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    deadline = time.perf_counter() + budget_s
    for _ in range(repeats):
        w, c = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
        if time.perf_counter() > deadline and len(wall) >= 3:
            break
    return {"wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu), "repeats": len(wall)}


def batch_scaling(model, repeats: int) -> list[dict]:
    """Per-structure ms of compute(list) and screen at each batch size, for each structure size."""
    rows = []
    for waters in BATCH_WATERS:
        pool = [molecular_cluster("H2O", waters, seed=k) for k in range(max(BATCH_SIZES))]
        for size in BATCH_SIZES:
            batch = pool[:size]
            row = {"waters": waters, "atoms_each": len(pool[0]), "structures": size}
            for name, fn in (("compute", lambda: model.compute(batch)), ("screen", lambda: model.screen(batch))):
                t = timed(fn, repeats)
                row[name] = {"wall_ms_per_structure": t["wall_ms"] / size, "cpu_ms_per_structure": t["cpu_ms"] / size,
                             "repeats": t["repeats"]}
            row["screen_batches"] = model.screen(batch)["throughput"]["batches"]
            rows.append(row)
            print(f"batch {waters:4d} H2O x {size:2d}: compute {row['compute']['cpu_ms_per_structure']:.2f} cpu-ms/structure, "
                  f"screen {row['screen']['cpu_ms_per_structure']:.2f}", flush=True)
    return rows


def batch_size_sweep(model, repeats: int) -> list[dict]:
    """Per-structure ms of `screen` on 64 structures against its max_atoms."""
    rows = []
    for waters in BATCH_WATERS:
        pool = [molecular_cluster("H2O", waters, seed=k) for k in range(max(BATCH_SIZES))]
        for max_atoms in MAX_ATOMS:
            t = timed(lambda: model.screen(pool, max_atoms=max_atoms), repeats)
            rows.append({"waters": waters, "atoms_each": len(pool[0]), "max_atoms": max_atoms,
                         "cpu_ms_per_structure": t["cpu_ms"] / len(pool), "wall_ms_per_structure": t["wall_ms"] / len(pool)})
            print(f"screen {waters:4d} H2O x 64, max_atoms {max_atoms}: {rows[-1]['cpu_ms_per_structure']:.2f} cpu-ms/structure", flush=True)
    return rows


def rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def measure_size(artifact: Path, waters: int, periodic: bool, repeats: int) -> dict:
    """One atom-scaling row, in this (fresh) process: peak RSS increase over the first calls, then timings."""
    model = load(artifact, threads=1)
    atoms = molecular_cluster("H2O", waters, periodic=periodic)
    rss_before, _ = rss_kib()
    model.compute(atoms)  # the first call: where the compiled graph's buffers for this size are allocated
    model.compute(atoms)
    _, peak = rss_kib()
    graph = build_graph([atoms], model.cutoff)
    row = {"waters": waters, "periodic": periodic, "atoms": len(atoms), "edges": int(graph.edge_index.shape[1]),
           "rss_before_mib": rss_before / 1024, "peak_rss_mib": peak / 1024,
           "peak_rss_increase_mib": (peak - rss_before) / 1024,
           "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    row["compute"] = timed(lambda: model.compute(atoms), repeats)
    row["checks"] = timed(lambda: check_structures([atoms], model.elements, allow_periodic=model.periodic), repeats)
    row["neighbour_list"] = timed(lambda: build_graph([atoms], model.cutoff), repeats)
    row["model"] = timed(lambda: model.run(graph), repeats)
    return row


def atom_scaling(artifact: Path, repeats: int) -> list[dict]:
    """One fresh subprocess per (size, periodicity)."""
    rows = []
    for periodic in (False, True):
        for waters in ATOM_WATERS:
            command = [sys.executable, __file__, "--artifact", str(artifact), "--measure-size", str(waters), "--repeats", str(repeats)]
            result = subprocess.run(command + (["--periodic"] if periodic else []), capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{'box' if periodic else 'cluster'} {r['atoms']:5d} atoms: {r['compute']['cpu_ms']:.1f} cpu-ms, "
                  f"peak RSS +{r['peak_rss_increase_mib']:.0f} MiB", flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [f"Measured {report['date']} on {report['machine']}, torch {report['torch']}, 1 thread; `{report['command']}`.",
             f"Load before: `{report['uptime_before']}`; after: `{report['uptime_after']}`. "
             "cpu = median thread CPU time (`time.thread_time`), wall = median wall time (`time.perf_counter`).", "",
             "Batch scaling (ms per structure; flat = linear in batch size):", "",
             "| structures | atoms each | batch size | compute(list) cpu | compute(list) wall | screen cpu | screen wall | screen batches |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["batch"]:
        lines.append(f"| {r['waters']} H2O cluster | {r['atoms_each']} | {r['structures']} | {r['compute']['cpu_ms_per_structure']:.2f} "
                     f"| {r['compute']['wall_ms_per_structure']:.2f} | {r['screen']['cpu_ms_per_structure']:.2f} "
                     f"| {r['screen']['wall_ms_per_structure']:.2f} | {r['screen_batches']} |")
    lines += ["", "`screen` on 64 structures against `max_atoms` (ms per structure):", "",
              "| structures | atoms each | max_atoms | cpu | wall |", "|---|---|---|---|---|"]
    for r in report["max_atoms"]:
        lines.append(f"| {r['waters']} H2O cluster | {r['atoms_each']} | {r['max_atoms']} | {r['cpu_ms_per_structure']:.2f} "
                     f"| {r['wall_ms_per_structure']:.2f} |")
    lines += ["", "Atom scaling and memory (one `compute` call, checks and neighbour list included; one fresh process per row):", "",
              "| system | atoms | edges | compute cpu (ms) | compute wall (ms) | µs/atom (cpu) | checks cpu (ms) | neighbour list cpu (ms) "
              "| model cpu (ms) | peak RSS increase (MiB) | RSS before (MiB) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["atoms"]:
        system = f"{r['waters']} H2O {'periodic box' if r['periodic'] else 'cluster'}"
        lines.append(f"| {system} | {r['atoms']} | {r['edges']} | {r['compute']['cpu_ms']:.2f} | {r['compute']['wall_ms']:.2f} "
                     f"| {1e3 * r['compute']['cpu_ms'] / r['atoms']:.1f} | {r['checks']['cpu_ms']:.2f} | {r['neighbour_list']['cpu_ms']:.2f} "
                     f"| {r['model']['cpu_ms']:.2f} | {r['peak_rss_increase_mib']:.0f} | {r['rss_before_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=None, help="a cpu artifact (default: compile ani1x-moment)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (fewer when slow)")
    parser.add_argument("--write", type=Path, default=None, help="a doc with the bench_throughput markers to put the table in")
    parser.add_argument("--measure-size", type=int, default=None, help=argparse.SUPPRESS)  # the per-size subprocess
    parser.add_argument("--periodic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_size is not None:
        print(json.dumps(measure_size(args.artifact, args.measure_size, args.periodic, args.repeats)))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    uptime_before = uptime()
    artifact = args.artifact
    if artifact is None:
        from mlffc.compiler import compile_student, resolve_target
        from mlffc.students import checkpoint_path

        artifact = OUT / "artifact"
        compile_student(checkpoint_path("ani1x-moment"), resolve_target("cpu", "aoti"), artifact)
    model = load(artifact, threads=1)
    report = {"date": str(date.today()), "machine": f"{platform.machine()} ({os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()})",
              "torch": torch.__version__, "artifact": str(artifact), "uptime_before": uptime_before,
              "command": "bench/bench_throughput.py " + " ".join(sys.argv[1:])}
    report["batch"] = batch_scaling(model, args.repeats)
    report["max_atoms"] = batch_size_sweep(model, args.repeats)
    report["atoms"] = atom_scaling(artifact, args.repeats)
    report["uptime_after"] = uptime()
    (OUT / "throughput.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    print("\n" + table)
    if args.write:
        write_between_markers(args.write, table, BEGIN, END)
        print(f"\nwrote the table into {args.write}")


if __name__ == "__main__":
    main()
