"""Distil ANI-1x into every student architecture on the same data and compare them.

Prints (and writes to bench/out/students.md, .json, .png) parameters, force MAE/RMSE and energy
MAE per atom against the teacher on held-out molecules, and compiled CPU speed (1 thread) at ~30,
~300 and ~1000 atoms against the teacher measured in the same run.

    .venv/bin/python bench/bench_students.py [--data bench/out/data.h5] [--epochs N] [--only moment]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mlffc.compiler import compile_student, resolve_target
from mlffc.data.clusters import molecular_cluster
from mlffc.data.generate import generate
from mlffc.data.samplers import SamplingConfig
from mlffc.data.seeds import seed_molecules
from mlffc.data.storage import write_frames
from mlffc.graph import build_graph
from mlffc.plots import save_figure
from mlffc.runtime import load
from mlffc.students import STUDENTS
from mlffc.teachers import load_teacher
from mlffc.timing import median_ms
from mlffc.trainers import TrainConfig, train

HERE = Path(__file__).parent
SIZES = {"~30": 10, "~300": 100, "~1000": 333}  # water molecules per cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "out" / "data.h5")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "students")
    parser.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    parser.add_argument("--only", nargs="*", default=sorted(STUDENTS), help="architectures to run")
    args = parser.parse_args()

    if not args.data.exists():
        write_frames(args.data, generate(seed_molecules(), load_teacher("ani1x"), SamplingConfig()))
    clusters = {label: molecular_cluster("H2O", n) for label, n in SIZES.items()}
    teacher = load_teacher("ani1x", precision="float32")
    teacher_ms = {label: median_ms(lambda: teacher.compute([atoms]), repeats=10) for label, atoms in clusters.items()}

    rows = []
    for name in args.only:
        config = replace(TrainConfig.from_file(HERE / "configs" / f"{name}.yaml"), data=str(args.data))
        if args.epochs:
            config = replace(config, epochs=args.epochs)
        run_dir = args.out / name
        student, result = train(config, run_dir)
        manifest = compile_student(run_dir / "student.safetensors", resolve_target("cpu"), run_dir / "artifact", args.data)
        model = load(run_dir / "artifact")
        speed = {}
        for label, atoms in clusters.items():
            graph = build_graph([atoms], model.cutoff)
            speed[label] = {"compiled_ms": median_ms(lambda: model.run(graph)), "call_ms": median_ms(lambda: model.compute(atoms)),
                            "eager_ms": median_ms(lambda: student(*graph.inputs()), repeats=5)}
        test = manifest["accuracy"]["vs_teacher"]
        rows.append({"architecture": name, "parameters": manifest["model"]["parameters"], "epochs": len(result["history"]),
                     "train_minutes": result["history"][-1]["seconds"] / 60, "test": test, "speed": speed})
    report = {"teacher_ms": teacher_ms, "students": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "students.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "students.md").write_text(table)
    print(table)
    plot(report, args.out / "students.png")


def markdown(report: dict) -> str:
    t = report["teacher_ms"]
    lines = [
        "| architecture | params | epochs | force MAE (eV/Å) | force RMSE | energy MAE (meV/atom) | "
        + " | ".join(f"{k} atoms: ms (x teacher)" for k in SIZES) + " |",
        "|---" * (6 + len(SIZES)) + "|",
    ]
    for row in report["students"]:
        speeds = " | ".join(f"{row['speed'][k]['call_ms']:.2f} ({t[k] / row['speed'][k]['call_ms']:.1f}x)" for k in SIZES)
        lines.append(f"| {row['architecture']} | {row['parameters']:,} | {row['epochs']} | {row['test']['force_mae']:.4f} | "
                     f"{row['test']['force_rmse']:.4f} | {1e3 * row['test']['energy_mae_per_atom']:.2f} | {speeds} |")
    lines.append("| teacher ANI-1x (8 networks, float32) | | | | | | " + " | ".join(f"{t[k]:.2f}" for k in SIZES) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    atoms = [3 * n for n in SIZES.values()]
    axes[0].loglog(atoms, [report["teacher_ms"][k] for k in SIZES], "k-o", label="teacher (8 networks)")
    for row in report["students"]:
        axes[0].loglog(atoms, [row["speed"][k]["call_ms"] for k in SIZES], "-o", label=row["architecture"])
        axes[1].scatter(row["speed"]["~300"]["call_ms"], row["test"]["force_mae"], s=40)
        axes[1].annotate(row["architecture"], (row["speed"]["~300"]["call_ms"], row["test"]["force_mae"]))
    axes[0].set(xlabel="atoms", ylabel="ms per energy+forces call (1 thread)", title="speed vs size")
    axes[0].legend()
    axes[1].set(xlabel="ms per call at 300 atoms", ylabel="force MAE vs teacher, held-out (eV/Å)", title="accuracy vs speed")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
