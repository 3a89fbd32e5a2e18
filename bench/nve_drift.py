"""NVE energy drift of a small molecule over a long run (default 10 ps of 0.5 fs steps), with a
compiled artifact and with the teacher, from the same structure and velocities. The artifact
passes when it drifts no more than the teacher (times --tolerance); exit 1 otherwise.

    .venv/bin/python bench/nve_drift.py ARTIFACT [--ps 10] [--molecule CH3CH2OH] [--json drift.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.build import molecule

from mlffc.io import write_json
from mlffc.md import nve_drift
from mlffc.runtime import load
from mlffc.teachers import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--ps", type=float, default=10.0, help="simulated time")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, initial velocities")
    parser.add_argument("--molecule", default="CH3CH2OH", help="ASE molecule name")
    parser.add_argument("--teacher", default=None, help="default: the manifest's teacher, else ani1x")
    parser.add_argument("--tolerance", type=float, default=1.0, help="pass when drift <= tolerance x the teacher's")
    parser.add_argument("--json", type=Path, default=None, help="write both runs as JSON")
    args = parser.parse_args()

    model = load(args.artifact)
    teacher_name = args.teacher or model.manifest.model.teacher_name or "ani1x"
    atoms = molecule(args.molecule)
    steps = round(args.ps * 1000 / args.timestep)
    runs = {}
    for label, calculator in (("artifact", model.calculator()), ("teacher", load_teacher(teacher_name).calculator())):
        runs[label] = nve_drift(atoms, calculator, steps, timestep_fs=args.timestep, temperature=args.temperature, interval=20)
        run = runs[label]
        print(f"{label:9s} {run['atoms']} atoms, {run['duration_ps']:.2f} ps in {run['seconds']:.0f} s "
              f"({1e3 * run['seconds'] / max(run['steps'], 1):.2f} ms/step): "
              + (f"drift {run['drift_ev_per_atom_per_ps']:.2e} eV/atom/ps, fluctuation {run['fluctuation_ev_per_atom']:.2e} eV/atom, "
                 f"max |E - E0| {run['max_deviation_ev_per_atom']:.2e} eV/atom" if run["stable"] else run["failure"]), flush=True)
    artifact, teacher = runs["artifact"]["drift_ev_per_atom_per_ps"], runs["teacher"]["drift_ev_per_atom_per_ps"]
    passed = bool(artifact <= args.tolerance * teacher)
    print(f"{'PASSED' if passed else 'FAILED'}: artifact drift {artifact:.2e} vs teacher {teacher:.2e} eV/atom/ps "
          f"(ratio {artifact / teacher if teacher > 0 else float('inf'):.2f}, tolerance {args.tolerance})")
    if args.json:
        write_json(args.json, {"molecule": args.molecule, "teacher": teacher_name, "runs": runs, "passed": passed})
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
