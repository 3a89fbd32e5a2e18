"""Students of several architectures and sizes distilled on the same data: the accuracy/speed front.

For each training config: train (resumable), errors against the teacher on the held-out (test)
molecules by category (equilibrium, hot, rattled, clusters, liquids; stress on periodic frames),
then the compiled cpu artifact's speed per `compute` call (1 thread, neighbour list included) on
water clusters of ~30, ~300 and ~1000 atoms against the teacher (8 networks, float32) measured in
the same run. Writes OUT/students.{json,md,png}.

    .venv/bin/python bench/bench_students.py --data DATA --configs bench/configs/moment-*.yaml [--epochs N]

DATA: a dataset (file or shard directory), e.g. the data/ of a `mlffc distill` work directory;
without --data, the G2/S22 demo data is generated into bench/out/data.h5.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mlffc.compiler import compile_student, resolve_target
from mlffc.data.clusters import molecular_cluster
from mlffc.data.generate import generate
from mlffc.data.sampling_config import SamplingConfig
from mlffc.data.seeds import seed_molecules
from mlffc.data.storage import read_dataset, write_frames
from mlffc.graph import build_graph
from mlffc.metrics import errors_by_category
from mlffc.plots import pyplot, save_figure
from mlffc.runtime import load
from mlffc.teachers import load_teacher
from mlffc.timing import median_ms
from mlffc.trainers import TrainConfig, train
from mlffc.trainers.distill import predict_frames

HERE = Path(__file__).parent
SIZES = {"~30": 10, "~300": 100, "~1000": 333}  # water molecules per cluster
CATEGORY_COLUMNS = ("equilibrium", "hot", "rattled", "clusters", "liquids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "students")
    parser.add_argument("--configs", type=Path, nargs="+",
                        default=[HERE / "configs" / f"{name}.yaml" for name in ("behler", "moment", "painn")])
    parser.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    args = parser.parse_args()

    data = args.data or HERE / "out" / "data.h5"
    if not data.exists():
        write_frames(data, generate(seed_molecules(), load_teacher("ani1x"), SamplingConfig()))
    test = read_dataset(data).split_named("test")
    clusters = {label: molecular_cluster("H2O", n) for label, n in SIZES.items()}
    teacher = load_teacher("ani1x", precision="float32")

    rows = []
    for path in args.configs:
        config = replace(TrainConfig.from_file(path), data=str(data))
        if args.epochs:
            config = replace(config, epochs=args.epochs)
        run_dir = args.out / path.stem
        student, result = train(config, run_dir)
        energy, forces, stress = predict_frames(student, test)
        compile_student(run_dir / "student.safetensors", resolve_target("cpu"), run_dir / "artifact", data)
        model = load(run_dir / "artifact")
        speed = {}
        for label, atoms in clusters.items():  # the teacher in the same loop: the same machine load
            graph = build_graph([atoms], model.cutoff)
            speed[label] = {"compiled_ms": median_ms(lambda: model.run(graph)), "call_ms": median_ms(lambda: model.compute(atoms)),
                            "teacher_ms": median_ms(lambda: teacher.compute([atoms]), repeats=10)}
        rows.append({"name": path.stem, "architecture": config.architecture, "student": config.student,
                     "parameters": sum(p.numel() for p in student.parameters()), "epochs": len(result["history"]),
                     "train_minutes": result["history"][-1]["seconds"] / 60, "best_epoch": result["best"]["epoch"],
                     "test": errors_by_category(energy, forces, test, stress), "speed": speed})
        write(args.out, {"data": str(data), "test_frames": len(test), "students": rows})


def write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "students.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / "students.md").write_text(table)
    print(table)
    plot(report, out / "students.png")


def markdown(report: dict) -> str:
    header = ["student", "params", "epochs (min)", "force MAE all (eV/Å)", "energy MAE (meV/atom)",
              *[f"F-MAE {c}" for c in CATEGORY_COLUMNS], "stress error",
              *[f"{k} atoms: ms (x teacher)" for k in SIZES]]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in report["students"]:
        test = row["test"]
        categories = [f"{test[c]['force_mae']:.4f}" if c in test else "" for c in CATEGORY_COLUMNS]
        stress = test.get("liquids", {}).get("stress_relative_error")
        speeds = [f"{row['speed'][k]['call_ms']:.2f} ({row['speed'][k]['teacher_ms'] / row['speed'][k]['call_ms']:.1f}x)" for k in SIZES]
        lines.append("| " + " | ".join([row["name"], f"{row['parameters']:,}", f"{row['epochs']} ({row['train_minutes']:.0f})",
                                         f"{test['all']['force_mae']:.4f}", f"{1e3 * test['all']['energy_mae_per_atom']:.2f}",
                                         *categories, "" if stress is None else f"{100 * stress:.1f}%", *speeds]) + " |")
    teacher = [f"{report['students'][-1]['speed'][k]['teacher_ms']:.2f}" for k in SIZES] if report["students"] else []
    lines.append("| teacher ANI-1x (8 networks, float32), last run | " + " | " * (len(header) - 1 - len(SIZES)) + " | ".join(teacher) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    atoms = [3 * n for n in SIZES.values()]
    if report["students"]:
        axes[0].loglog(atoms, [report["students"][-1]["speed"][k]["teacher_ms"] for k in SIZES], "k-o", label="teacher (8 networks)")
    for row in report["students"]:
        axes[0].loglog(atoms, [row["speed"][k]["call_ms"] for k in SIZES], "-o", label=row["name"])
        ratio = row["speed"]["~300"]["teacher_ms"] / row["speed"]["~300"]["call_ms"]
        axes[1].scatter(ratio, row["test"]["all"]["force_mae"], s=40)
        axes[1].annotate(row["name"], (ratio, row["test"]["all"]["force_mae"]))
    axes[0].set(xlabel="atoms", ylabel="ms per energy+forces call (1 thread)", title="speed vs size")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="x faster than the teacher at 300 atoms", ylabel="force MAE vs teacher, test molecules (eV/Å)",
                title="accuracy vs speed")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
