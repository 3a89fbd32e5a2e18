"""`mlffc compile`: student -> energy graph -> passes (each checked) -> joint graph -> backend ->
acceptance check -> artifact.

This module resolves targets (and the plan), runs the compile flow (trace, passes, differentiate,
export, lower) and writes the manifest; the artifact's checks (calibration set, acceptance,
accuracy, speed) are mlffc.acceptance.

The artifact is a directory written atomically: the backend's payload (and the op library it
calls, if any), the student checkpoint it came from, and manifest.json (target, backend and its
versions, passes with their measured effects, species, units, accuracy against the eager student
and the teacher, speed). The compiled model must agree with the eager student within the
tolerance of its precision and passes before anything is written (the acceptance check, as in
nequip's compile).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import torch
from torch.fx import GraphModule

import mlffc
from mlffc.acceptance import TOLERANCE, acceptance, acceptance_tolerance, calibration_set, evaluate_compiled, float32_rounding, measure_speed
from mlffc.capture import differentiate, example_graph, export, trace_energy
from mlffc.data.storage import read_dataset
from mlffc.errors import MlffcError
from mlffc.graph import GRAPH_INPUTS, GRAPH_OUTPUTS, SIGNATURE, Graph
from mlffc.io import atomic_directory, sha256_file
from mlffc.passes import ENERGY_PASSES, JOINT_PASSES, Budget, Calibration, PassSettings, needs_custom_ops, run_passes
from mlffc.passes.core import PRECISIONS, finish
from mlffc.passes.manager import check_pass_names
from mlffc.progress import console
from mlffc.runtime.manifest import (MANIFEST, SCHEMA_VERSION, STUDENT_FILE, Accuracy, BackendInfo, Capabilities, Checkpoint, DeviceInfo,
                                    Difference, Manifest, ModelInfo, PassRecord, Speed, TargetInfo, VsEager, VsTeacher, host_description)
from mlffc.runtime.model import load
from mlffc.students import Student, checkpoint_path, load_student
from mlffc.targets import Target, get_target
from mlffc.targets.backends import BACKENDS, Payload, get_backend
from mlffc.units import UNITS


def resolve_target(name: str, backend: str | None = None, threads: int | None = None, passes: list[str] | None = None,
                   precision: str | None = None) -> Target:
    """The named target with overrides. A backend that cannot run the mlffc op library drops the
    target's default passes that need it; passes named explicitly must suit the backend."""
    target = get_target(name)
    if backend is not None:
        if backend not in target.backends:
            raise MlffcError(f"target {name} supports backends {', '.join(target.backends)}, not '{backend}'")
        runs_ops = BACKENDS[backend].custom_ops
        target = replace(target, backend=backend, passes=tuple(p for p in target.passes if runs_ops or p not in needs_custom_ops(target.passes)))
    if passes is not None:
        check_pass_names(passes)
        unsuitable = needs_custom_ops(passes) if not BACKENDS[target.backend].custom_ops else []
        if unsuitable:
            raise MlffcError(f"passes {', '.join(unsuitable)} make graphs that call the mlffc op library, which backend "
                             f"{target.backend} cannot run; use --backend aoti or leave them out")
        target = replace(target, passes=tuple(passes))
    required = [p for p in BACKENDS[target.backend].required_passes if p not in target.passes]
    target = replace(target, passes=(*target.passes, *required))
    if precision is not None:
        if precision not in PRECISIONS:
            raise MlffcError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
        target = replace(target, precision=precision)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise MlffcError(f"threads must be an integer >= 1, got {threads!r}")
        target = replace(target, threads=threads)
    return target


def pass_settings(target: Target) -> PassSettings:
    """The target's pass settings; its settings dict may set accumulation, layers (per-layer
    precision) and budgets (pass name -> {energy_per_atom, forces, teacher_force_mae})."""
    budgets = {name: Budget(**budget) for name, budget in target.settings.get("budgets", {}).items()}
    return PassSettings(device=target.device, precision=target.precision, accumulation=target.settings.get("accumulation", "fp64"),
                        layers=target.settings.get("layers", {}), budgets=budgets)


def plan(target: Target) -> list[str]:
    """The steps compile would run, in words (`mlffc compile --plan`)."""
    energy = [p.__name__ for p in ENERGY_PASSES if p.__name__ in target.passes]
    joint = [p.__name__ for p in JOINT_PASSES if p.__name__ in target.passes]
    return [
        "trace the energy of edge vectors with make_fx (symbolic sizes)",
        *[f"pass {name} (energy graph; checked against its error budget on the calibration set)" for name in energy],
        "differentiate: trace energy -> forces + stress (the backward as explicit ops)",
        *[f"pass {name} (joint graph; checked)" for name in joint],
        "torch.export with dynamic atoms, edges, structures",
        f"lower with backend {target.backend} for {target.device}"
        + (f" {target.arch}" if target.arch else f", {target.threads} thread(s)") + f", precision {target.precision}",
        f"acceptance: compiled vs eager within {TOLERANCE} plus the budgets of lossy passes",
        "accuracy vs teacher on the test split (passes calibrate on the validation split); speed at ~300 atoms",
        "write manifest.json + payload atomically",
    ]


def compile_student(student_path: Path | str, target: Target, out: Path, data: Path | None = None) -> Manifest:
    """Compile the checkpoint `student_path` (or a bundled pretrained student's name) for `target`
    into the artifact directory `out` (test-split accuracy from `data`, when given); returns the
    manifest written."""
    student_path = checkpoint_path(student_path)
    if target.device == "cuda" and not torch.cuda.is_available():
        raise MlffcError(
            f"target {target.name} needs its GPU ({target.arch}) at compile time (AOTInductor specialises to the device) "
            f"and none is visible; run on that GPU, or use --plan to see the pipeline"
        )
    backend = get_backend(target.backend)
    if target.device not in backend.devices:
        raise MlffcError(f"backend {backend.name} lowers for {', '.join(backend.devices)}, not for {target.device} (target {target.name})")
    check_destination(Path(out), [student_path] + ([Path(data)] if data else []))
    student, meta = load_student(student_path)
    check_finite_weights(student, student_path)
    dataset = read_dataset(data) if data else None
    frames = dataset.split_named("test") if dataset else None  # reported only: nothing is chosen on it
    example = example_graph(student)
    calibration = calibration_set(student, dataset.split_named("val") if dataset else None)
    started = time.perf_counter()
    eager = calibration.run(lambda graph: student(*graph.inputs()))  # once: passes and acceptance compare with it
    with console.status(f"compiling for {target.name} with {backend.name}"):
        graph_module, records = optimize(student, example, target.passes, pass_settings(target), calibration, eager)
        for record in records:
            if not record["applied"]:
                console.print(f"[yellow]pass {record['name']} rejected[/]: {record['rejected']}")
        exported = export(graph_module, example)
        with atomic_directory(out, may_replace=replaceable_artifact) as tmp:
            payload = backend.lower(exported, target, tmp)
            shutil.copyfile(student_path, tmp / STUDENT_FILE)
            manifest = _manifest(student, meta, target, backend, payload, records, tmp).write(tmp)
            compiled = load(tmp)
            rounding = float32_rounding(student, calibration, eager)
            accepted = acceptance(compiled, calibration, eager, acceptance_tolerance(records, rounding))
            vs_eager = VsEager(max_abs_energy_per_atom=accepted["max_abs_energy_per_atom"], max_forces_error=accepted["max_forces_error"],
                               tolerance=Difference(**accepted["tolerance"]), float32_rounding=Difference(**rounding))
            vs_teacher = VsTeacher(split="test", frames=len(frames), **evaluate_compiled(compiled, frames)) if frames is not None and len(frames) else None
            manifest = replace(manifest, accuracy=Accuracy(vs_eager=vs_eager, vs_teacher=vs_teacher), speed=Speed(**measure_speed(compiled, student)),
                               compile_seconds=time.perf_counter() - started).write(tmp)
    return manifest


def optimize(student: Student, example: Graph, names: Sequence[str], settings: PassSettings,
             calibration: Calibration | None = None, reference=None) -> tuple[GraphModule, list[dict]]:
    """Trace the student's energy graph, run the energy passes, differentiate, run the joint
    passes: the joint graph to export, and one record per pass (applied or rejected).
    reference: the eager student's calibration outputs, when the caller has them already."""
    check_pass_names(names)
    if calibration is not None and reference is None:
        reference = calibration.run(lambda graph: student(*graph.inputs()))
    energy_graph = finish(trace_energy(student, example))
    energy_graph, energy_records = run_passes(energy_graph, names, settings, "energy", calibration, reference)
    joint = differentiate(energy_graph, example)
    joint, joint_records = run_passes(joint, names, settings, "joint", calibration, reference)
    return joint, energy_records + joint_records


def check_destination(out: Path, inputs: list[Path]) -> None:
    """Refuse, before any work, an --out that compile must not replace: a file, the working
    directory or one above it, a directory holding an input, or a non-empty directory that is not
    an earlier artifact (replaceable_artifact)."""
    if out.exists() and not out.is_dir():
        raise MlffcError(f"--out {out} is a file; compile writes an artifact directory: choose a directory")
    target = out.resolve()
    for protected, what in [(Path.cwd().resolve(), "the working directory"), *((p.resolve(), f"the input {p}") for p in inputs)]:
        if target == protected or target in protected.parents:
            raise MlffcError(f"--out {out} would replace {what} (or a directory holding it): choose a new directory")
    if out.is_dir() and any(out.iterdir()):
        replaceable_artifact(out)


def replaceable_artifact(path: Path) -> None:
    """Return when `path` is an earlier mlffc artifact and holds nothing its manifest does not
    name (so replacing it loses nothing else); otherwise MlffcError saying what is in the way.
    Reads only the file names from the raw JSON, not Manifest.read: an artifact of an older schema
    (or one the runtime would refuse to load) is still compile's own and may be replaced."""
    advice = "choose another --out, or empty it yourself"
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        names = {MANIFEST, *manifest["payload"], manifest["model"]["checkpoint"]["file"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MlffcError(f"--out {path} holds files and is not an earlier mlffc artifact (no readable {MANIFEST}: "
                         f"{type(exc).__name__}); compile replaces only its own artifacts: {advice}") from None
    foreign = sorted(p.name for p in path.iterdir() if p.name not in names)
    if foreign:
        raise MlffcError(f"--out {path} is an earlier artifact but also holds {', '.join(foreign[:5])}"
                         f"{' ...' if len(foreign) > 5 else ''}, which compile did not make: {advice}")


def check_finite_weights(student: Student, path: Path) -> None:
    """Refuse a student with a NaN or infinite parameter or buffer: it would compile, and compare
    equal to its own NaN outputs."""
    for name, tensor in student.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MlffcError(f"{path}: student weight {name} holds {int((~torch.isfinite(tensor)).sum())} NaN or infinite "
                             f"values (a diverged training?); retrain it")


def _manifest(student: Student, meta: dict, target: Target, backend, payload: Payload, records: list[dict], directory: Path) -> Manifest:
    """The manifest of a lowered artifact, before its checks (accuracy, speed) have run."""
    host = host_description()
    return Manifest(
        schema_version=SCHEMA_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        mlffc=mlffc.__version__,
        target=TargetInfo.from_dict(target.as_dict(), "target"),
        backend=BackendInfo(name=backend.name, entry=payload.entry.name, libraries=tuple(p.name for p in payload.libraries),
                            versions=backend.versions(), facts=payload.facts, torch=torch.__version__),
        built_on=host,
        device=DeviceInfo(kind=target.device, arch=target.arch if target.device == "cuda" else host.cpu_capability,
                          name=host.gpu if target.device == "cuda" else host.machine),
        precision=target.precision,
        passes=tuple(PassRecord.from_dict(record, f"passes[{k}]") for k, record in enumerate(records)),
        payload={p.name: sha256_file(p) for p in payload.files},
        model=ModelInfo(architecture=student.name, config=student.config(), parameters=sum(p.numel() for p in student.parameters()),
                        species=tuple(student.species), cutoff=student.cutoff,
                        checkpoint=Checkpoint(file=STUDENT_FILE, sha256=sha256_file(directory / STUDENT_FILE)), teacher=meta.get("teacher")),
        units=UNITS,
        inputs=GRAPH_INPUTS,
        outputs=GRAPH_OUTPUTS,
        signature=SIGNATURE,
        capabilities=Capabilities(periodic=True, stress=True),
    )
