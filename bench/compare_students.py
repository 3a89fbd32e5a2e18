"""Students side by side on the test split of one distillation's data, each on the test frames of
scaffold families it never trained on (`trained_families` in its checkpoint), by category and by
seed set. Frames that `mlffc data validate` rejects for too-close atoms are left out. Writes
OUT.{json,md}.

    .venv/bin/python bench/compare_students.py --data W/data --out bench/out/compare \\
        shipped=ani1x-moment new=W/runs/round-00/student.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_fidelity import test_errors
from mlffc.data.storage import read_dataset
from mlffc.data.validate import MIN_DISTANCE
from mlffc.structures import closest_pair
from mlffc.students import load_student

COLUMNS = ("all", "drug-like", "fragments", "small", "packed", "equilibrium", "hot", "rattled", "clusters", "liquids")


def compare(data: Path, students: dict[str, str]) -> dict:
    frames = read_dataset(data)
    families = frames.attrs.get("families", {})
    test = frames.split_named("test")
    valid = [k for k in range(len(test)) if closest_pair(test.atoms(k), MIN_DISTANCE) is None]
    report = {"data": str(data), "valid_test_frames": len(valid), "students": {}}
    for name, path in students.items():
        student, meta = load_student(path)
        seen = set(meta.get("trained_families", []))
        keep = [k for k in valid if families.get(str(test.group[k]), str(test.group[k])) not in seen]
        report["students"][name] = {"checkpoint": path, "frames": len(keep), **test_errors(student, test.select(keep))}
    return report


def markdown(report: dict) -> str:
    lines = ["| student | unseen test frames | " + " | ".join(COLUMNS) + " |", "|---" * (2 + len(COLUMNS)) + "|"]
    for name, r in report["students"].items():
        table = {**r["test"], **r["test_by_source"]}
        cells = [f"{table[c]['force_mae']:.3f} ({1e3 * table[c]['energy_mae_per_atom']:.1f})" if c in table else ""
                 for c in COLUMNS]
        lines.append(f"| {name} | {r['frames']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "Force MAE in eV/Å (energy MAE in meV/atom)."]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the distillation's data (HDF5 or shard directory)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/compare"))
    parser.add_argument("students", nargs="+", help="NAME=CHECKPOINT or NAME=PRETRAINED_NAME")
    args = parser.parse_args()
    students = dict(s.split("=", 1) for s in args.students)
    report = compare(args.data, students)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
