"""Compiler benchmark: speed and added error of each backend and each pass against the eager student.

For each variant (backend, passes, precision) the student is compiled for the `cpu` target (one
thread) with `mlffc compile`'s pipeline; energy + forces are then timed on water clusters of ~30,
~300 and ~2000 atoms (`molecular_cluster("H2O", n)`, neighbour lists excluded), interleaving all
variants and the eager student round by round so machine noise hits them alike (median of rounds;
min in the JSON). The error each variant adds is measured against the eager student on the same
clusters (max |dF|, max |dE| per atom) and, with --data, against the teacher on its test split.
Writes bench/out/compiler/compiler.md and .json.

    .venv/bin/python bench/bench_compiler.py [--student run/student.safetensors] [--data data.h5] [--only NAME ...]

Without --student, the default moment student (random weights, features standardised on water
and CHNO molecules): speed does not depend on training, and errors are against that student.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from ase.build import molecule

from mlffc.compiler import compile_student, resolve_target
from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.students import build_student, load_student, save_student
from mlffc.targets.registry import CPU_PASSES

HERE = Path(__file__).parent
SIZES = {"~30": 10, "~300": 100, "~2000": 667}  # water molecules per cluster
CLEANUP = ("remove_identity_ops", "fold_constants", "eliminate_common_subexpressions", "remove_dead_code")
FUSIONS = ("fuse_edge_scatter", "fuse_radial_linear", "fuse_linear_activation")
LOOSE = {"energy_per_atom": 1.0, "forces": 10.0, "teacher_force_mae": 1.0}  # measure lossy variants, do not gate them
# name -> (backend, passes, precision, loosen budgets)
VARIANTS = {
    "aoti: no passes": ("aoti", (), "fp32", False),
    "aoti: clean-up": ("aoti", CLEANUP, "fp32", False),
    **{f"aoti: clean-up + {f}": ("aoti", (*CLEANUP, f), "fp32", False) for f in FUSIONS},
    "aoti: clean-up + decompose_small_matmuls": ("aoti", (*CLEANUP, "decompose_small_matmuls"), "fp32", False),
    "aoti: default (cpu target)": ("aoti", CPU_PASSES, "fp32", False),
    "aoti: default + all fusions": ("aoti", (*CPU_PASSES, *FUSIONS), "fp32", False),
    "aoti: default, bf16 layers": ("aoti", (*CPU_PASSES, "convert_precision"), "bf16", True),
    "aoti: default, fp16 layers": ("aoti", (*CPU_PASSES, "convert_precision"), "fp16", True),
    "aoti: default, int8 weights": ("aoti", (*CPU_PASSES, "quantize_weights"), "fp32", True),
    "onnxruntime: default": ("onnxruntime", None, "fp32", False),
    "tvm: default": ("tvm", None, "fp32", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, help="student checkpoint (default: a random default moment student)")
    parser.add_argument("--data", type=Path, help="labelled HDF5: error against the teacher on its test split")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "compiler")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved timing rounds at ~300 atoms")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    student_path = args.student or default_student(args.out / "student.safetensors")
    student, _ = load_student(student_path)
    clusters = {label: build_graph([molecular_cluster("H2O", n)], student.cutoff) for label, n in SIZES.items()}

    rows = {}
    for name, (backend, passes, precision, loose) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        target = resolve_target("cpu", backend, passes=list(passes) if passes is not None else None, precision=precision)
        if loose:
            budgets = {p: LOOSE for p in ("convert_precision", "quantize_weights")}
            target = replace(target, settings={**target.settings, "budgets": budgets})
        artifact = artifact_dir(args.out, name)
        started = time.perf_counter()
        manifest = compile_student(student_path, target, artifact, args.data)
        vs_teacher = manifest.accuracy.vs_teacher
        rows[name] = {"backend": backend, "passes": [p.name for p in manifest.passes if p.applied],
                      "rejected": [p.name for p in manifest.passes if not p.applied], "precision": precision,
                      "compile_s": time.perf_counter() - started, "pass_records": [p.to_dict() for p in manifest.passes],
                      "vs_teacher": vs_teacher.to_dict() if vs_teacher else None}
        print(f"compiled {name} in {rows[name]['compile_s']:.0f} s", flush=True)

    models = {name: load(artifact_dir(args.out, name)) for name in rows}
    for name, model in models.items():
        rows[name]["vs_eager"] = added_error(model, student, clusters)
    timings = interleaved_timings(student, models, clusters, args.rounds)
    report = {"threads": 1, "cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
              "atoms": {k: int(g.positions.shape[0]) for k, g in clusters.items()},
              "edges": {k: int(g.edge_index.shape[1]) for k, g in clusters.items()},
              "eager": timings.pop("eager"), "variants": {name: {**row, "speed": timings[name]} for name, row in rows.items()}}
    (args.out / "compiler.json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    (args.out / "compiler.md").write_text(table)
    print(table)


def artifact_dir(out: Path, name: str) -> Path:
    return out / "artifacts" / "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def default_student(path: Path) -> Path:
    """The default moment student with random weights, its features standardised on water and
    CHNO molecules (every species must occur, or its features' scales stay at the floor)."""
    torch.manual_seed(0)
    student = build_student("moment", species=[1, 6, 7, 8])
    molecules = [molecule(name) for name in ("CH3CONH2", "HCN", "C6H6", "CH3OH", "NH3", "CH4", "H2CO", "C2H4")]
    student.calibrate(build_graph([molecular_cluster("H2O", 100), *molecules], student.cutoff))
    save_student(student, path)
    return path


def added_error(model, student, clusters) -> dict:
    worst = {"forces": 0.0, "energy_per_atom": 0.0}
    for graph in clusters.values():
        energy, forces, _ = model.run(graph)
        eager = student(*graph.inputs())
        worst["forces"] = max(worst["forces"], float((forces - eager[1].detach()).abs().max()))
        worst["energy_per_atom"] = max(worst["energy_per_atom"], float((energy - eager[0].detach()).abs().max() / graph.positions.shape[0]))
    return worst


def interleaved_timings(student, models, clusters, rounds: int) -> dict:
    """ms per energy+forces call: every variant and the eager student once per round, in turn."""
    runs = {"eager": lambda g: student(*g.inputs()), **{name: m.run for name, m in models.items()}}
    result = {name: {} for name in runs}
    for label, graph in clusters.items():
        count = max(3, int(rounds * 300 / graph.positions.shape[0])) if label != "~300" else rounds
        samples = {name: [] for name in runs}
        for run in runs.values():
            run(graph)  # warm-up
        for _ in range(count):
            for name, run in runs.items():
                start = time.perf_counter()
                run(graph)
                samples[name].append(1e3 * (time.perf_counter() - start))
        for name, values in samples.items():
            result[name][label] = {"median_ms": statistics.median(values), "min_ms": min(values)}
    return result


def markdown(report: dict) -> str:
    eager = report["eager"]
    head = " | ".join(f"{k} atoms: ms (x eager)" for k in SIZES)
    lines = [f"| variant | passes applied | {head} | max dF vs eager (eV/Å) | max dE vs eager (eV/atom) | force MAE vs teacher |",
             "|---" * (6 + len(SIZES)) + "|",
             "| eager student | | " + " | ".join(f"{eager[k]['median_ms']:.2f}" for k in SIZES) + " | | | |"]
    for name, row in report["variants"].items():
        speed = " | ".join(f"{row['speed'][k]['median_ms']:.2f} ({eager[k]['median_ms'] / row['speed'][k]['median_ms']:.1f}x)" for k in SIZES)
        teacher = f"{row['vs_teacher']['force_mae']:.4f}" if row.get("vs_teacher") else "n/a"
        passes = ", ".join(row["passes"]) + (f"; rejected: {', '.join(row['rejected'])}" if row["rejected"] else "")
        lines.append(f"| {name} | {passes or '-'} | {speed} | {row['vs_eager']['forces']:.1e} | {row['vs_eager']['energy_per_atom']:.1e} | {teacher} |")
    sizes = ", ".join(f"{k}: {report['atoms'][k]} atoms / {report['edges'][k]} edges" for k in SIZES)
    return "\n".join(lines) + f"\n\n{sizes}; 1 thread, CPU {report['cpu']}, torch {report['torch']}; median of interleaved rounds.\n"


if __name__ == "__main__":
    main()
