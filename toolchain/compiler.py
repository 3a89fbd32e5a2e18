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
nequip's compile). With --backend auto every backend of the target is lowered and checked, each in
its own temporary directory, and the fastest that passes is kept (the manifest's backend_selection).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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
from mlffc.runtime.manifest import (MANIFEST, SCHEMA_VERSION, STUDENT_FILE, Accuracy, BackendInfo, BackendTrial, Capabilities, Checkpoint, DeviceInfo,
                                    Difference, Manifest, ModelInfo, PassRecord, Speed, TargetInfo, VsEager, VsTeacher, host_description)
from mlffc.runtime.model import CompiledModel, load
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


AUTO = "auto"  # --backend auto: every backend of the target for its device, the fastest that passes acceptance kept


def candidate_targets(name: str, threads: int | None = None, passes: list[str] | None = None,
                      precision: str | None = None) -> list[Target]:
    """--backend auto: the target resolved once per backend it lists that lowers for its device
    (each with the passes that backend runs), in the target's order. Explicit passes must suit every
    one of them (resolve_target refuses them otherwise, before any work)."""
    target = get_target(name)
    return [resolve_target(name, backend, threads, passes, precision) for backend in target.backends if target.device in BACKENDS[backend].devices]


def plan_auto(candidates: Sequence[Target]) -> list[str]:
    """The steps of `compile --backend auto`, in words: which backends would be tried, with which passes."""
    device = candidates[0].device
    installed = [t for t in candidates if BACKENDS[t.backend].unavailable_reason() is None]
    missing = [t.backend for t in candidates if t not in installed]
    return [
        f"backend auto: try every backend of target {candidates[0].name} that lowers for {device}: "
        + ", ".join(t.backend for t in installed) + (f" (not installed here, recorded as such: {', '.join(missing)})" if missing else ""),
        *[f"with {t.backend}: passes {', '.join(t.passes)}" for t in installed],
        "for each, in its own temporary directory beside --out: trace, passes (each checked), differentiate, export, lower, "
        f"acceptance (compiled vs eager within {TOLERANCE} plus the budgets of lossy passes), speed at ~300 atoms",
        "keep the fastest that passes acceptance and remove the others' directories; record every backend tried "
        "(ms, accepted, why each loser lost) in manifest backend_selection; none passes: an error, nothing written",
        "accuracy vs teacher on the test split for the one kept; write manifest.json and move it into --out",
    ]


def compile_student(student_path: Path | str, target: Target | Sequence[Target], out: Path, data: Path | None = None) -> Manifest:
    """Compile the checkpoint `student_path` (or a bundled pretrained student's name) for `target`
    into the artifact directory `out` (test-split accuracy from `data`, when given); returns the
    manifest written. A list of targets (candidate_targets, --backend auto) lowers with each and
    keeps the fastest that passes acceptance."""
    student_path = checkpoint_path(student_path)
    candidates = [target] if isinstance(target, Target) else list(target)
    auto = not isinstance(target, Target)
    first = candidates[0]
    if first.device == "cuda" and not torch.cuda.is_available():
        raise MlffcError(
            f"target {first.name} needs its GPU ({first.arch}) at compile time (AOTInductor specialises to the device) "
            f"and none is visible; run on that GPU, or use --plan to see the pipeline"
        )
    if not auto:
        backend = get_backend(first.backend)
        if first.device not in backend.devices:
            raise MlffcError(f"backend {backend.name} lowers for {', '.join(backend.devices)}, not for {first.device} (target {first.name})")
    check_destination(Path(out), [student_path] + ([Path(data)] if data else []))
    student, meta = load_student(student_path)
    check_finite_weights(student, student_path)
    dataset = read_dataset(data) if data else None
    frames = dataset.split_named("test") if dataset else None  # reported only: nothing is chosen on it
    started = time.perf_counter()
    build = _Build(student, meta, student_path, calibration_set(student, dataset.split_named("val") if dataset else None))
    if not auto:
        with atomic_directory(out, may_replace=replaceable_artifact) as tmp:
            manifest, compiled = build.lower(first, tmp)
            return build.finish(manifest, compiled, frames, started, None, tmp)
    built: dict = {}
    try:
        trials = build.try_each(candidates, Path(out), built)
        winner = _winner(trials, built)
        manifest, compiled, directory = built[winner]
        with atomic_directory(out, may_replace=replaceable_artifact) as tmp:
            result = build.finish(manifest, compiled, frames, started, tuple(trials), directory)
            for path in directory.iterdir():
                os.replace(path, tmp / path.name)
        return result
    finally:
        for _, _, directory in built.values():
            shutil.rmtree(directory, ignore_errors=True)  # compile's own temporary directories


class _Build:
    """What every lowering of one student shares: the student, its calibration set and the eager
    outputs on it (computed once), and how an artifact is lowered, checked and finished."""

    def __init__(self, student: Student, meta: dict, student_path: Path, calibration: Calibration):
        self.student, self.meta, self.student_path, self.calibration = student, meta, student_path, calibration
        self.example = example_graph(student)
        self.eager = calibration.run(lambda graph: student(*graph.inputs()))  # once: passes and acceptance compare with it
        self.rounding = float32_rounding(student, calibration, self.eager)

    def lower(self, target: Target, directory: Path) -> tuple[Manifest, CompiledModel]:
        """Passes, export, lowering and acceptance into `directory`: the manifest (with accuracy vs
        eager and speed) and the loaded artifact; MlffcError from acceptance when it disagrees."""
        manifest, compiled, records = self._lowered(target, directory)
        return self._accepted(manifest, compiled, records)

    def _lowered(self, target: Target, directory: Path):
        backend = get_backend(target.backend)
        with console.status(f"compiling for {target.name} with {backend.name}"):
            graph_module, records = optimize(self.student, self.example, target.passes, pass_settings(target), self.calibration, self.eager)
            for record in records:
                if not record["applied"]:
                    console.print(f"[yellow]pass {record['name']} rejected[/]: {record['rejected']}")
            exported = export(graph_module, self.example)
            payload = backend.lower(exported, target, directory)
            shutil.copyfile(self.student_path, directory / STUDENT_FILE)
            manifest = _manifest(self.student, self.meta, target, backend, payload, records, directory).write(directory)
            return manifest, load(directory), records

    def _accepted(self, manifest: Manifest, compiled: CompiledModel, records: list[dict]):
        """The manifest with accuracy vs eager and speed, once the artifact passes acceptance (MlffcError otherwise)."""
        accepted = acceptance(compiled, self.calibration, self.eager, acceptance_tolerance(records, self.rounding))
        vs_eager = VsEager(max_abs_energy_per_atom=accepted["max_abs_energy_per_atom"], max_forces_error=accepted["max_forces_error"],
                           tolerance=Difference(**accepted["tolerance"]), float32_rounding=Difference(**self.rounding))
        manifest = replace(manifest, accuracy=Accuracy(vs_eager=vs_eager), speed=Speed(**measure_speed(compiled, self.student)))
        return manifest, compiled

    def try_each(self, candidates: Sequence[Target], out: Path, built: dict) -> list[BackendTrial]:
        """Lower with every candidate, each in a temporary directory beside `out`: one trial per
        candidate (ms and acceptance; the losers' reasons filled by _winner), and in `built`, per
        accepted backend, (manifest, compiled, directory). A failed candidate's directory is removed
        at once; the caller removes those in `built`."""
        trials = []
        for target in candidates:
            name, missing = target.backend, BACKENDS[target.backend].unavailable_reason()
            if missing:
                trials.append(BackendTrial(name, "not installed", False, None, f"not installed: {missing}"))
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(prefix=f".{out.name}.{name}.", suffix=".tmp", dir=out.parent))
            kept = False
            try:
                try:
                    manifest, compiled, records = self._lowered(target, directory)
                except Exception as exc:  # noqa: BLE001 -- a backend's lowering raises many types; the loser is recorded with it
                    trials.append(BackendTrial(name, "lowering failed", False, None, f"lowering failed: {_first_line(exc)}"))
                    continue
                try:
                    manifest, compiled = self._accepted(manifest, compiled, records)
                except MlffcError as exc:
                    trials.append(BackendTrial(name, "failed acceptance", False, None, f"failed acceptance: {_first_line(exc)}"))
                    continue
                console.print(f"backend {name}: accepted, {manifest.speed.compiled_ms:.3f} ms")
                trials.append(BackendTrial(name, "slower", True, manifest.speed.compiled_ms, None))
                built[name] = (manifest, compiled, directory)
                kept = True
            finally:
                if not kept:
                    shutil.rmtree(directory, ignore_errors=True)
        return trials

    def finish(self, manifest: Manifest, compiled: CompiledModel, frames, started: float, selection, directory: Path) -> Manifest:
        """The accepted artifact's manifest completed (accuracy vs teacher, compile time, the
        backend selection) and written into `directory`."""
        vs_teacher = VsTeacher(split="test", frames=len(frames), **evaluate_compiled(compiled, frames)) if frames is not None and len(frames) else None
        return replace(manifest, accuracy=replace(manifest.accuracy, vs_teacher=vs_teacher), compile_seconds=time.perf_counter() - started,
                       backend_selection=selection).write(directory)


def _winner(trials: list[BackendTrial], built: dict) -> str:
    """The fastest accepted backend; the trials (edited in place) say why each other one lost.
    MlffcError listing every backend's reason when none was accepted."""
    if not built:
        raise MlffcError("--backend auto: no backend passed; nothing written. " + "; ".join(f"{t.backend}: {t.reason}" for t in trials))
    winner = min(built, key=lambda name: built[name][0].speed.compiled_ms)
    best = built[winner][0].speed.compiled_ms
    for k, trial in enumerate(trials):
        if trial.backend == winner:
            trials[k] = replace(trial, status="chosen")
        elif trial.accepted:
            trials[k] = replace(trial, reason=f"slower: {trial.ms:.3f} ms vs {best:.3f} ms ({winner})")
    return winner


def _first_line(exc: Exception) -> str:
    """An exception as one line (a backend's error can run to pages), at most 300 characters."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


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
