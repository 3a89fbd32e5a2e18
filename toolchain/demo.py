"""`mlffc demo`: the main job on the bundled default, resumable step by step.

ANI-1x ensemble (bundled) -> configurations from G2/S22 seeds -> the bundled pretrained moment
student fine-tuned on them (or, --from-scratch, a new one) -> cpu artifact -> check on held-out
molecules (families the pretrained student never saw) -> speed against the eager student and the
teacher at ~300 atoms.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from mlffc.data.mutate import parent_group
from mlffc.progress import console, output

if TYPE_CHECKING:
    from mlffc.runtime.manifest import Manifest

DEMO_CONFIG = "demo.yaml"  # from scratch (--from-scratch)
PRETRAINED_CONFIG = "demo-pretrained.yaml"  # fine-tuning PRETRAINED (the default)
PRETRAINED = "ani1x-moment"


def demo_config_path(name: str = DEMO_CONFIG) -> Path:
    return Path(str(resources.files("mlffc") / "configs" / name))


def run_demo(workdir: Path, fresh: bool = False, from_scratch: bool = False) -> dict:
    from mlffc.acceptance import speed_system
    from mlffc.check import Limits, check_artifact
    from mlffc.compiler import compile_student, resolve_target
    from mlffc.data.generate import generate
    from mlffc.data.sampling_config import SamplingConfig
    from mlffc.data.seeds import mark_seen_families, seed_molecules
    from mlffc.data.storage import read_frames, write_frames
    from mlffc.errors import MlffcError
    from mlffc.io import write_json
    from mlffc.runtime import load
    from mlffc.students import load_student
    from mlffc.teachers import load_teacher
    from mlffc.timing import median_ms
    from mlffc.trainers import TrainConfig, train

    workdir.mkdir(parents=True, exist_ok=True)
    pretrained = None if from_scratch else PRETRAINED
    if pretrained:
        try:
            seen = set(load_student(pretrained)[1]["trained_families"])
        except (MlffcError, KeyError):
            console.print(f"[yellow]the pretrained student {pretrained} is not in this installation: training from scratch[/]")
            pretrained = None
    made = "fine-tuned from the bundled pretrained student " + pretrained if pretrained else "trained from scratch"
    data = workdir / ("ani1x-unseen.h5" if pretrained else "ani1x.h5")  # the splits differ: one file each
    run_dir, artifact = workdir / ("run-pretrained" if pretrained else "run"), workdir / "artifact-cpu"

    if fresh or not data.exists():
        console.rule("1/4 generate and label")
        seeds = seed_molecules()
        if pretrained:  # held-out molecules: only scaffold families the pretrained student never saw
            mark_seen_families(seeds, seen)
        write_frames(data, generate(seeds, load_teacher("ani1x"), SamplingConfig()))
    else:
        console.print(f"reusing {data} (--fresh to regenerate)")
    frames = read_frames(data)

    console.rule(f"2/4 train: {made} (resumes an interrupted run)")
    config = TrainConfig.from_file(demo_config_path(PRETRAINED_CONFIG if pretrained else DEMO_CONFIG))
    train(replace(config, data=str(data)), run_dir, restart=fresh)

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
        "student_eager_ms": manifest.speed.eager_ms,
        "student_compiled_ms": manifest.speed.compiled_ms,
        "student_compiled_call_ms": median_ms(lambda: model.compute(system)),
    }
    result = {"student_made": made, "data": {"frames": len(frames), "atoms": int(frames.natoms.sum()), "molecules": len(set(frames.group.tolist())),
                       "splits": frames.attrs["splits"]},
              "manifest": manifest.to_dict(), "check": report, "speed": speed}
    write_json(workdir / "report.json", result, strict=False)
    _print_report(result, manifest, workdir)
    return result


def _print_report(result: dict, manifest: Manifest, workdir: Path) -> None:
    check, speed = result["check"], result["speed"]
    t = check["vs_teacher"]
    table = Table("", "", title="mlffc demo: ANI-1x -> moment student -> cpu", show_header=False)
    held_out = sorted({parent_group(g) for g in result["data"]["splits"]["test"]})
    table.add_row("data", f"{result['data']['frames']} frames of {result['data']['molecules']} molecules; "
                  f"held out (with their mutants): {', '.join(held_out)}")
    table.add_row("student", f"{manifest.model.architecture}, {manifest.model.parameters:,} parameters, "
                  f"cutoff {manifest.model.cutoff} Å; {result['student_made']}")
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
