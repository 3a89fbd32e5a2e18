"""`mlffc demo`: the main job on the bundled default, resumable step by step.

ANI-1x ensemble (bundled) -> configurations from G2/S22 seeds -> moment student -> cpu artifact
-> check on held-out molecules -> speed against the eager student and the teacher at ~300 atoms.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from rich.table import Table

from mlffc.data.mutate import parent_group
from mlffc.progress import console, output

DEMO_CONFIG = "demo.yaml"


def demo_config_path() -> Path:
    return Path(str(resources.files("mlffc") / "configs" / DEMO_CONFIG))


def run_demo(workdir: Path, fresh: bool = False) -> dict:
    from mlffc.check import Limits, check_artifact
    from mlffc.compiler import compile_student, resolve_target, speed_system
    from mlffc.data.generate import generate
    from mlffc.data.samplers import SamplingConfig
    from mlffc.data.seeds import seed_molecules
    from mlffc.data.storage import read_frames, write_frames
    from mlffc.io import write_json
    from mlffc.runtime import load
    from mlffc.teachers import load_teacher
    from mlffc.timing import median_ms
    from mlffc.trainers import TrainConfig, train

    workdir.mkdir(parents=True, exist_ok=True)
    data, run_dir, artifact = workdir / "ani1x.h5", workdir / "run", workdir / "artifact-cpu"

    if fresh or not data.exists():
        console.rule("1/4 generate and label")
        write_frames(data, generate(seed_molecules(), load_teacher("ani1x"), SamplingConfig()))
    else:
        console.print(f"reusing {data} (--fresh to regenerate)")
    frames = read_frames(data)

    console.rule("2/4 train (resumes an interrupted run)")
    train(replace(TrainConfig.from_file(demo_config_path()), data=str(data)), run_dir, restart=fresh)

    console.rule("3/4 compile for cpu")
    manifest = compile_student(run_dir / "student.safetensors", resolve_target("cpu"), artifact, data)

    console.rule("4/4 check against the teacher")
    report = check_artifact(artifact, data, Limits(), "test", plot=workdir / "parity.png")

    system = speed_system()
    model = load(artifact)
    teacher_fp32 = load_teacher("ani1x", precision="float32")
    speed = {
        "atoms": len(system),
        "teacher_ms": median_ms(lambda: teacher_fp32.compute([system]), repeats=10),
        "student_eager_ms": manifest["speed"]["eager_ms"],
        "student_compiled_ms": manifest["speed"]["compiled_ms"],
        "student_compiled_call_ms": median_ms(lambda: model.compute(system)),
    }
    result = {"data": {"frames": len(frames), "atoms": int(frames.natoms.sum()), "molecules": len(set(frames.group.tolist())),
                       "splits": frames.attrs["splits"]},
              "manifest": manifest, "check": report, "speed": speed}
    write_json(workdir / "report.json", result)
    _print_report(result, workdir)
    return result


def _print_report(result: dict, workdir: Path) -> None:
    check, speed, manifest = result["check"], result["speed"], result["manifest"]
    t = check["vs_teacher"]
    table = Table("", "", title="mlffc demo: ANI-1x -> moment student -> cpu", show_header=False)
    held_out = sorted({parent_group(g) for g in result["data"]["splits"]["test"]})
    table.add_row("data", f"{result['data']['frames']} frames of {result['data']['molecules']} molecules; "
                  f"held out (with their mutants): {', '.join(held_out)}")
    table.add_row("student", f"{manifest['model']['architecture']}, {manifest['model']['parameters']:,} parameters, cutoff {manifest['model']['cutoff']} Å")
    table.add_row("force MAE vs teacher (test)", f"{t['force_mae']:.4f} eV/Å (RMSE {t['force_rmse']:.4f})")
    table.add_row("energy MAE vs teacher (test)", f"{1e3 * t['energy_mae_per_atom']:.2f} meV/atom")
    table.add_row("compiled vs eager", f"max |dF| {check['vs_eager']['forces']:.1e} eV/Å")
    table.add_row(f"teacher, {speed['atoms']} atoms", f"{speed['teacher_ms']:.1f} ms (8-network ensemble, float32, JAX threads)")
    table.add_row("student eager", f"{speed['student_eager_ms']:.2f} ms (1 thread)")
    table.add_row("student compiled", f"{speed['student_compiled_ms']:.2f} ms graph, {speed['student_compiled_call_ms']:.2f} ms with neighbour list (1 thread)")
    table.add_row("speed-up", f"{speed['student_eager_ms'] / speed['student_compiled_ms']:.1f}x vs eager, "
                  f"{speed['teacher_ms'] / speed['student_compiled_call_ms']:.1f}x vs teacher (full calls)")
    table.add_row("check", "[green]PASSED[/]" if check["passed"] else f"[red]FAILED[/]: {'; '.join(check['failures'])}")
    table.add_row("files", f"{workdir}/report.json, parity.png, run/loss_curve.png, artifact-cpu/")
    output.print(table)
