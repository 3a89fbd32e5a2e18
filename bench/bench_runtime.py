"""Runtime speed, in one run:

1. ASE MD (velocity Verlet, 0.5 fs, 300 K) steps/s with the artifact's calculator and with the
   teacher's, on water clusters of ~30, ~300 and ~1000 atoms, and the share of the artifact's
   step spent in the neighbour list (Verlet list: rebuilds plus the per-step filter).
2. The C++ runtime (mlffc-run --repeat) against the Python runtime per call at ~50 atoms and at
   the MD sizes: both build a fresh neighbour list and run the compiled model.
3. Screening throughput of `CompiledModel.screen` on small molecules.

Targets: C++ per call within 10% of Python at ~50 atoms; neighbour list under 20% of the MD step
at 1000 atoms. Prints a markdown table and writes it into docs/runtime.md (between the
bench markers) unless --no-docs.

    .venv/bin/python bench/bench_runtime.py ARTIFACT [--runner build/runtime-cpp/mlffc-run]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import molecule
from ase.io import write
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph
from mlffc.io import atomic_path
from mlffc.runtime import load
from mlffc.runtime.build_cpp import DEFAULT_BUILD, build_cpp
from mlffc.teachers import load_teacher
from mlffc.timing import median_ms

DOCS = Path(__file__).resolve().parents[1] / "docs" / "runtime.md"
BEGIN, END = "<!-- bench_runtime:begin -->", "<!-- bench_runtime:end -->"
MD_SIZES = (10, 100, 333)  # water molecules: 30, 300, 999 atoms
PER_CALL_SIZE = 17  # water molecules: 51 atoms, per-call comparison only


def md_steps_per_second(atoms, calculator, steps: int, warmup: int = 5) -> float:
    """Steps/s of velocity Verlet from 300 K velocities, over `steps` steps after `warmup`."""
    atoms = atoms.copy()
    atoms.calc = calculator
    thermalize_momenta(atoms, 300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dynamics.run(warmup)
    if hasattr(calculator, "neighbour_seconds"):  # the artifact's: count from here
        calculator.neighbour_seconds = calculator.model_seconds = 0.0
        calculator.neighbours.rebuilds = calculator.neighbours.steps = 0
    started = time.perf_counter()
    dynamics.run(steps)
    return steps / (time.perf_counter() - started)


def cpp_per_call(runner: Path, artifact: Path, atoms, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "structure.xyz"
        write(path, atoms, format="extxyz")
        result = subprocess.run([str(runner), str(artifact), str(path), "--repeat", str(repeat)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{runner} failed: {result.stderr}")
    return json.loads(result.stdout)["timing"]


def write_between_markers(doc: Path, table: str, begin: str, end: str) -> None:
    """Replace what stands between the `begin` and `end` lines of `doc` with `table` (atomically)."""
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} lacks the {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    with atomic_path(doc) as tmp:
        tmp.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--runner", type=Path, default=None, help=f"mlffc-run (default: build it in {DEFAULT_BUILD})")
    parser.add_argument("--steps", type=int, default=200, help="timed MD steps per system with the artifact")
    parser.add_argument("--teacher-steps", type=int, default=50, help="timed MD steps per system with the teacher")
    parser.add_argument("--no-docs", action="store_true", help=f"do not write the table into {DOCS}")
    args = parser.parse_args()

    model = load(args.artifact)
    runner = args.runner or build_cpp(quiet=True)
    sizes = sorted((*MD_SIZES, PER_CALL_SIZE))
    clusters = {n: molecular_cluster("H2O", n) for n in sizes}
    # The teacher comes last: JAX's CPU threads keep spinning after a call and would slow whatever runs next.
    rows = {}
    for n, atoms in clusters.items():
        graph = build_graph([atoms], model.cutoff)
        cpp = cpp_per_call(runner, args.artifact, atoms, repeat=30)
        rows[n] = {"atoms": len(atoms), "edges": graph.edge_index.shape[1], "cpp_call": cpp["compute_ms"], "cpp_model": cpp["model_ms"],
                   "python_call": median_ms(lambda: model.compute(atoms), repeats=30),
                   "python_model": median_ms(lambda: model.run(graph), repeats=30)}
    for n in MD_SIZES:
        calculator = model.calculator()
        rows[n]["artifact_md"] = md_steps_per_second(clusters[n], calculator, args.steps)
        rows[n]["neighbour_share"] = calculator.neighbour_seconds * rows[n]["artifact_md"] / args.steps
        rows[n]["rebuilds"] = f"{calculator.neighbours.rebuilds}/{calculator.neighbours.steps}"
    screening = [molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH", "C2H4", "HCN", "H2CO", "CH3CONH2")] * 64
    model.screen(screening[:16])
    throughput = model.screen(screening)["throughput"]
    teacher = load_teacher("ani1x", precision="float32")
    for n in MD_SIZES:
        rows[n]["teacher_md"] = md_steps_per_second(clusters[n], teacher.calculator(), args.teacher_steps)

    lines = ["| system | atoms | edges | artifact MD steps/s | teacher MD steps/s | speed-up | neighbour list share of the artifact's MD step (rebuilds/steps) "
             "| Python per call (ms) | C++ per call (ms) | C++ / Python | Python model only (ms) | C++ model only (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, row in rows.items():
        md = "| | | |"
        if "artifact_md" in row:
            md = (f"{row['artifact_md']:.1f} | {row['teacher_md']:.1f} | {row['artifact_md'] / row['teacher_md']:.1f}x "
                  f"| {100 * row['neighbour_share']:.1f}% ({row['rebuilds']}) |")
        lines.append(f"| {n} H2O cluster | {row['atoms']} | {row['edges']} | {md} {row['python_call']:.2f} | {row['cpp_call']:.2f} "
                     f"| {row['cpp_call'] / row['python_call']:.2f} | {row['python_model']:.2f} | {row['cpp_model']:.2f} |")
    threads = torch.get_num_threads()
    table = "\n".join([
        f"Measured {date.today()} on {platform.machine()} ({os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}), "
        f"torch {torch.__version__}, artifact built for {model.manifest.target.threads} thread(s), torch threads {threads}; "
        f"teacher: ANI-1x 8-network ensemble in float32 (JAX, its default threads). "
        f"`.venv/bin/python bench/bench_runtime.py ARTIFACT`; MD from 300 K velocities, {args.steps} steps (teacher {args.teacher_steps}) of 0.5 fs after 5 warm-up steps",
        "",
        *lines,
        "",
        f"Screening (`CompiledModel.screen`, {throughput['structures']} small molecules, {throughput['batches']} batches): "
        f"{throughput['structures_per_s']:.0f} structures/s, {throughput['atoms_per_s']:.0f} atoms/s.",
    ])
    print("\n" + table)
    if not args.no_docs:
        write_between_markers(DOCS, table, BEGIN, END)
        print(f"\nwrote the table into {DOCS}")


if __name__ == "__main__":
    main()
