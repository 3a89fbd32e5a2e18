"""Data at scale: generate and label 100,000+ configurations (10 to 1000 atoms) with the ANI-1x
ensemble through the command line a user runs, then validate them.

    .venv/bin/python bench/bench_data.py [--out bench-data/] [--shards 2] [--workers 2] [--scale 1.0]

Every G2/S22 molecule with 10 mutants each (~526 molecules, relaxed by the teacher) gives itself,
3 x 20 rattles, 2 x 64 normal-mode samples (300 K, 1000 K) and 2 x 12 MD frames (300 K, 800 K);
400 packed clusters and periodic boxes of 10-1000 atoms; the 5% of each molecule's frames with
the lowest ensemble spread per sqrt(atoms) are dropped. --scale multiplies the rattles,
normal-mode samples and packed systems (for a quick run: extrapolate honestly). Reports
configurations labelled and kept per second of wall time, the wall time of generation and
validation, and the CPU seconds of generation (all processes: on a shared machine, CPU seconds /
workers is what the run would take with a core per worker). A re-run
with the same --out skips finished shards (delete it to measure again)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    def scaled(count: int) -> int:
        return max(1, round(count * args.scale))

    command = [
        sys.executable, "-m", "mlffc", "generate", "--teacher", "ani1x", "--out", str(args.out),
        "--shards", str(args.shards), "--workers", str(args.workers), "--mutants-per-seed", "10",
        "--rattles-per-scale", str(scaled(20)), "--normal-modes", str(scaled(64)), "--md-steps", "48",
        "--md-interval", "4", "--packed", str(scaled(400)), "--spread-quantile", "0.05",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    generate_seconds = time.perf_counter() - start
    cpu_seconds = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu_seconds.ru_utime + cpu_seconds.ru_stime  # the command and its worker processes

    start = time.perf_counter()
    validation = subprocess.run([sys.executable, "-m", "mlffc", "data", "validate", str(args.out),
                                 "--plot", str(args.out / "validate.png"), "--json", str(args.out / "validate.json")])
    validate_seconds = time.perf_counter() - start

    from mlffc.data.storage import read_attrs

    shards = [read_attrs(p) for p in sorted(args.out.glob("shard-*.h5"))]
    summary = json.loads((args.out / "validate.json").read_text())["summary"]
    labelled = sum(s["shard"]["labelled"] for s in shards)
    results = {
        "labelled": labelled, "kept": summary["frames"], "atoms": summary["atoms"],
        "atoms per frame": summary["atoms per frame"], "size histogram": summary["size histogram"],
        "samplers": summary["samplers"], "shards": args.shards, "workers": args.workers, "scale": args.scale,
        "generate seconds": round(generate_seconds, 1), "generate cpu seconds": round(cpu_seconds, 1),
        "labelled per second": round(labelled / generate_seconds, 1),
        "kept per second": round(summary["frames"] / generate_seconds, 1),
        "validate seconds": round(validate_seconds, 1), "validates clean": validation.returncode == 0,
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
