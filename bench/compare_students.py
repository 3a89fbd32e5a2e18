"""Students side by side on the test split of one distillation's data, each on the test frames of
scaffold families it never trained on (`trained_families` in its checkpoint), by category and by
seed set. Frames that `mlffc data validate` rejects for too-close atoms are left out. Writes
OUT.{json,md}.

`--members 0,3` adds single networks of the labelling teacher's ensemble as rows, scored against
the ensemble mean (the labels) on the same frames: the teacher's own noise floor, what a student
"as good as one member" would score. `--every N` keeps every N-th test frame, for all rows.

    .venv/bin/python bench/compare_students.py --data W/data --out bench/out/compare \\
        shipped=ani1x-moment new=W/runs/round-00/student.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_fidelity import test_errors, valid_frames
from mlffc.data.storage import read_dataset
from mlffc.metrics import errors_by_category, errors_by_source
from mlffc.students import load_student
from mlffc.teachers.fennol import FennolTeacher
from mlffc.teachers.registry import bundled_files

COLUMNS = ("all", "drug-like", "fragments", "small", "packed", "equilibrium", "hot", "rattled", "clusters", "liquids")


def compare(data: Path, students: dict[str, str], members: list[int] = (), every: int = 1) -> dict:
    frames = read_dataset(data)
    families = frames.attrs.get("families", {})
    test = frames.split_named("test")
    valid = valid_frames(test, every)
    report = {"data": str(data), "valid_test_frames": len(valid), "students": {}}
    teacher = frames.attrs["teacher"]["name"]
    for member in members:
        report["students"][f"{teacher} network {member}"] = {
            "checkpoint": None, "frames": len(valid), **member_errors(teacher, member, test.select(valid))}
    for name, path in students.items():
        student, meta = load_student(path)
        seen = set(meta.get("trained_families", []))
        keep = [k for k in valid if families.get(str(test.group[k]), str(test.group[k])) not in seen]
        report["students"][name] = {"checkpoint": path, "frames": len(keep), **test_errors(student, test.select(keep))}
    return report


def member_errors(teacher: str, member: int, test) -> dict:
    """One network of a bundled FeNNol ensemble against the ensemble-mean labels of `test`."""
    files = bundled_files(teacher)
    if not 0 <= member < len(files):
        raise SystemExit(f"--members: {teacher} has networks 0-{len(files) - 1}, got {member}")
    labels = FennolTeacher([files[member]], f"{teacher}-network{member}").compute([test.atoms(k) for k in range(len(test))])
    return {"test": errors_by_category(labels.energy, labels.forces, test, labels.stress),
            "test_by_source": errors_by_source(labels.energy, labels.forces, test, labels.stress)}


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
    parser.add_argument("--members", default="", help="comma-separated networks of the teacher's ensemble to add as rows")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th test frame")
    parser.add_argument("students", nargs="*", help="NAME=CHECKPOINT or NAME=PRETRAINED_NAME")
    args = parser.parse_args()
    students = dict(s.split("=", 1) for s in args.students)
    members = [int(m) for m in args.members.split(",") if m]
    report = compare(args.data, students, members, args.every)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
