"""The distillation recipe end to end, and what its student is worth on chemistry it never saw.

Runs (or resumes) `mlffc distill` with a recipe (default: the bundled toolchain/configs/distill.yaml)
in WORKDIR, then for the student of every round: errors against the teacher on the test molecules
(no scaffold shared with training) by category (equilibrium, hot MD, rattled, clusters, periodic
liquids; stress on periodic frames); for the final student compiled for cpu: its speed per call at
~300 atoms (1 thread, neighbour list included) against the teacher in the same run, Langevin
stability on unseen test molecules (10 ps at 300 K and 500 K: no covalent bond broken or formed, no
force above 50 eV/Å) and NVE drift next to the teacher's. Writes WORKDIR/fidelity.{json,md}.

    .venv/bin/python bench/bench_fidelity.py --workdir bench/out/recipe [--recipe RECIPE.yaml] [--md-ps 10]
        [--student RUN/student.safetensors]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from mlffc.acceptance import speed_system
from mlffc.compiler import compile_student, resolve_target
from mlffc.data.storage import read_dataset
from mlffc.data.validate import MIN_DISTANCE
from mlffc.md import langevin_stability, nve_drift
from mlffc.metrics import CATEGORIES, errors_by_category, errors_by_source
from mlffc.runtime import load
from mlffc.structures import closest_pair
from mlffc.students import load_student
from mlffc.teachers import load_teacher
from mlffc.timing import median_ms
from mlffc.trainers.distill import predict_frames
from mlffc.trainers.loop import DistillConfig, run_distill

HERE = Path(__file__).parent
RECIPE = HERE.parent / "toolchain" / "configs" / "distill.yaml"


def valid_frames(frames, every: int = 1) -> list[int]:
    """Indices (every `every`-th) of the frames `mlffc data validate` accepts: no two atoms nearer
    than MIN_DISTANCE (the test split may hold a few rattled frames it rejects)."""
    return [k for k in range(0, len(frames), every) if closest_pair(frames.atoms(k), MIN_DISTANCE) is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=HERE / "out" / "recipe")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--md-ps", type=float, default=10.0, help="Langevin picoseconds per temperature")
    parser.add_argument("--md-molecules", type=int, default=12, help="unseen test molecules simulated")
    parser.add_argument("--student", help="the final student to compile and simulate (default: the recipe's best "
                        "round): a checkpoint, e.g. one trained further on the recipe's data, or a bundled name")
    args = parser.parse_args()

    started = time.perf_counter()
    record = run_distill(DistillConfig.from_file(args.recipe), args.workdir)
    recipe_seconds = time.perf_counter() - started
    frames = read_dataset(args.workdir / "data")
    test = frames.split_named("test")
    kept = valid_frames(test)
    clashing = len(test) - len(kept)
    test = test.select(kept)
    report = {"recipe": str(args.recipe), "workdir": str(args.workdir), "bench_seconds": recipe_seconds,
              "data": {"frames": len(frames), "atoms": int(frames.natoms.sum()),
                       "groups": {s: len(set(frames.split_named(s).group.tolist())) for s in ("train", "val", "test")}},
              "test_frames_dropped": {"count": clashing, "why": f"atoms nearer than {MIN_DISTANCE} Å"}, "rounds": []}
    for entry in record["rounds"]:
        student, _ = load_student(args.workdir / "runs" / f"round-{entry['round']:02d}" / "student.safetensors")
        report["rounds"].append({"round": entry["round"], "frames": entry["frames"], "added": entry.get("added"),
                                 "train_seconds": entry["train_seconds"], **test_errors(student, test)})

    final = args.student or Path(record["best"])
    if args.student:
        student, _ = load_student(args.student)
        history = Path(args.student).parent / "history.json"
        seconds = json.loads(history.read_text())["history"][-1]["seconds"] if history.exists() else None
        report["rounds"].append({"round": f"final ({args.student})", "frames": len(frames), "added": None,
                                 "train_seconds": seconds, **test_errors(student, test)})
    artifact = args.workdir / "artifact-cpu"
    manifest = compile_student(final, resolve_target("cpu"), artifact, args.workdir / "data")
    model = load(artifact)
    teacher = load_teacher("ani1x", precision="float32")
    system = speed_system()
    report["speed"] = {"atoms": len(system), "student_call_ms": median_ms(lambda: model.compute(system)),
                       "teacher_ms": median_ms(lambda: teacher.compute([system]), repeats=10),
                       "parameters": manifest.model.parameters}
    report["speed"]["ratio"] = report["speed"]["teacher_ms"] / report["speed"]["student_call_ms"]

    molecules = unseen_molecules(test, args.md_molecules)
    steps = int(round(args.md_ps * 1000 / 0.5))
    report["md"] = {}
    for temperature in (300.0, 500.0):
        runs = langevin_stability(molecules, model.calculator(), temperature, steps, seed=int(temperature))
        report["md"][f"{temperature:g}K"] = {"molecules": len(runs), "stable": sum(r["stable"] for r in runs), "runs": runs}
    nve_molecule = max(molecules, key=len)
    report["nve"] = {label: nve_drift(nve_molecule, calculator, steps)
                     for label, calculator in (("student", model.calculator()), ("teacher", load_teacher("ani1x").calculator()))}
    (args.workdir / "fidelity.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.workdir / "fidelity.md").write_text(table)
    print(table)


def test_errors(student, test) -> dict:
    """The student's test errors by category and by seed set."""
    energy, forces, stress = predict_frames(student, test)
    return {"test": errors_by_category(energy, forces, test, stress), "test_by_source": errors_by_source(energy, forces, test, stress)}


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.0f}"


def unseen_molecules(test, count: int):
    """The relaxed seed frames of the largest-scaffold test molecules (drug-like first), up to `count`."""
    seeds = [k for k in range(len(test)) if test.sampler[k] == "seed" and not test.pbc[k].any()
             and not str(test.group[k]).startswith("packed/")]
    seeds.sort(key=lambda k: (not str(test.group[k]).startswith("drug-like/"), -int(test.natoms[k])))
    return [test.atoms(k) for k in seeds[:count]]


def markdown(report: dict) -> str:
    columns = [c for c in CATEGORIES if any(c in r["test"] for r in report["rounds"])]
    lines = ["| round | frames | train min | force MAE all (eV/Å) | energy MAE (meV/atom) | "
             + " | ".join(f"F-MAE {c}" for c in columns) + " | E-MAE liquids | stress error (liquids) |",
             "|---" * (6 + len(columns)) + "|"]
    for r in report["rounds"]:
        t = r["test"]
        cells = [f"{t[c]['force_mae']:.4f}" if c in t else "" for c in columns]
        liquid = t.get("liquids", {})
        lines.append(f"| {r['round']} | {r['frames']:,} | {_minutes(r['train_seconds'])} | {t['all']['force_mae']:.4f} | "
                     f"{1e3 * t['all']['energy_mae_per_atom']:.2f} | " + " | ".join(cells)
                     + f" | {1e3 * liquid.get('energy_mae_per_atom', float('nan')):.2f} | "
                     + (f"{100 * liquid['stress_relative_error']:.1f}% |" if "stress_relative_error" in liquid else " |"))
    sources = sorted({name for r in report["rounds"] for name in r["test_by_source"]} - {"all"})
    lines += ["", "| round | " + " | ".join(f"F-MAE {name} (frames)" for name in sources) + " |", "|---" * (1 + len(sources)) + "|"]
    for r in report["rounds"]:
        t = r["test_by_source"]
        lines.append(f"| {r['round']} | " + " | ".join(f"{t[n]['force_mae']:.4f} ({t[n]['frames']})" if n in t else "" for n in sources) + " |")
    s = report["speed"]
    lines += ["", f"Compiled student ({s['parameters']:,} parameters) at {s['atoms']} atoms: {s['student_call_ms']:.2f} ms per call "
              f"(neighbour list included, 1 thread) vs teacher {s['teacher_ms']:.1f} ms: {s['ratio']:.1f}x."]
    for temperature, md in report["md"].items():
        lines.append(f"Langevin {temperature}, {md['runs'][0]['duration_ps']:g} ps: {md['stable']} of {md['molecules']} unseen "
                     "molecules stable (no bond broken or formed, no force above 50 eV/Å).")
    nve = report["nve"]
    lines.append(f"NVE drift ({nve['student']['atoms']} atoms, {nve['student']['duration_ps']:g} ps): student "
                 f"{nve['student'].get('drift_ev_per_atom_per_ps', float('inf')):.2e}, teacher "
                 f"{nve['teacher'].get('drift_ev_per_atom_per_ps', float('inf')):.2e} eV/atom/ps.")
    dropped = report["test_frames_dropped"]
    lines.append(f"Test frames left out: {dropped['count']} ({dropped['why']}; data validation rejects them).")
    lines.append(f"Recipe wall time in this run: {report['bench_seconds'] / 60:.0f} min "
                 "(a resumed run counts only what it redid).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
