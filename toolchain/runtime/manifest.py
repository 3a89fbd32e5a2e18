"""The artifact manifest (manifest.json): what was built, for what, from what, and how well it does.

One schema object, `Manifest`, with its sections as frozen dataclasses; docs/artifacts.md
describes its fields. `Manifest.write` is the one writer (compile) and `Manifest.read` the one
reader: it refuses, naming the field, a missing, mistyped, unknown or non-finite field and any
schema version but SCHEMA_VERSION. The C++ runtime (runtime-cpp/src/manifest.cpp) reads the same
file.

A compiled artifact is native code: load only artifacts from a source you trust. Loading verifies
the SHA-256 of every payload file recorded here and refuses an artifact built for another
machine, device or torch release, saying what to rebuild.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mlffc.errors import MlffcError
from mlffc.io import read_json, sha256_file, write_json

MANIFEST = "manifest.json"
STUDENT_FILE = "student.safetensors"  # the eager student an artifact was compiled from, beside its payload
SCHEMA_VERSION = 2  # 2: passes with measured effects, backend versions and libraries, device, signature
_CPU_LEVELS = ("DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256")
# Field metadata: an optional field left out of the JSON (rather than written as null) when None.
_OMITTED = {"omitted": True}


def _omitted():
    return field(default=None, metadata=_OMITTED)


class _Section:
    """A part of the manifest: `from_dict` reads it with the checks of `Manifest.read`, `to_dict`
    writes it as JSON values (optional fields marked _OMITTED left out when None)."""

    @classmethod
    def from_dict(cls, data, where: str = "", source: str = MANIFEST):
        return _read(cls, data, where, source)

    def to_dict(self) -> dict:
        return _write(self)


@dataclass(frozen=True)
class TargetInfo(_Section):
    """The target compiled for (targets.Target as resolved, overrides applied)."""

    name: str
    device: str  # cpu or cuda
    backend: str
    backends: tuple[str, ...]
    description: str
    arch: str | None  # CUDA compute capability (sm_80); None on CPU
    precision: str
    passes: tuple[str, ...]
    threads: int  # CPU threads the payload is built for
    settings: dict  # accumulation, layers, budgets, backend options


@dataclass(frozen=True)
class BackendInfo(_Section):
    name: str
    entry: str  # the payload file the runtime loads
    libraries: tuple[str, ...]  # shared libraries loaded before it (the mlffc op library)
    versions: dict[str, str]  # distribution -> version, checked at load
    facts: dict  # backend details (ONNX opset and providers, TVM target, TensorRT shape ranges)
    torch: str


@dataclass(frozen=True)
class Host(_Section):
    """What compiled code depends on: machine, CPU vector ISA, torch release, CUDA device."""

    machine: str
    cpu_capability: str
    torch: str
    cuda: str | None = _omitted()
    gpu: str | None = _omitted()
    gpu_arch: str | None = _omitted()


@dataclass(frozen=True)
class DeviceInfo(_Section):
    kind: str  # cpu or cuda
    arch: str | None  # sm_80, or the CPU ISA (AVX512)
    name: str | None  # the GPU, or the machine


@dataclass(frozen=True)
class Difference(_Section):
    """A worst difference, or a limit on one: max |dE| per atom (eV), max |dF| (eV/Å; relative above
    1 eV/Å where compiled is compared with eager), and the rise in force MAE against the teacher
    (eV/Å) where labels were given."""

    energy_per_atom: float
    forces: float
    teacher_force_mae: float | None = _omitted()


@dataclass(frozen=True)
class GraphTime(_Section):
    """Eager time of the graph on the ~300-atom calibration system before and after a pass (ms)."""

    before: float | None
    after: float | None


@dataclass(frozen=True)
class PassRecord(_Section):
    """One pass as run (passes/manager.run_passes); the measured fields are present when it was
    checked on a calibration set, as compile always does."""

    name: str
    stage: str  # energy or joint
    seconds: float
    applied: bool
    rejected: str | None = _omitted()  # why, when not applied
    error: Difference | None = _omitted()  # against the graph before it
    budget: Difference | None = _omitted()
    vs_student: Difference | None = _omitted()  # against the eager student
    teacher_force_mae: float | None = None  # eV/Å, on the labelled calibration frames (null without labels)
    graph_ms: GraphTime | None = _omitted()


@dataclass(frozen=True)
class Checkpoint(_Section):
    file: str
    sha256: str


@dataclass(frozen=True)
class ModelInfo(_Section):
    architecture: str
    config: dict
    parameters: int
    species: tuple[int, ...]  # atomic numbers
    cutoff: float  # Å
    checkpoint: Checkpoint
    teacher: dict | None  # the labels' teacher, as the dataset recorded it

    @property
    def teacher_name(self) -> str | None:
        return (self.teacher or {}).get("name")


@dataclass(frozen=True)
class Capabilities(_Section):
    periodic: bool
    stress: bool


@dataclass(frozen=True)
class VsEager(_Section):
    """Compiled against the eager student on the calibration graphs (acceptance)."""

    max_abs_energy_per_atom: float  # eV
    max_forces_error: float  # eV/Å, relative above 1 eV/Å
    tolerance: Difference
    float32_rounding: Difference  # the eager student in float32 against itself in float64


@dataclass(frozen=True)
class VsTeacher(_Section):
    """Errors of the compiled model on the test split of the data given to compile."""

    split: str
    frames: int
    energy_mae_per_atom: float  # eV
    energy_rmse_per_atom: float
    force_mae: float  # eV/Å
    force_rmse: float
    force_max_error: float


@dataclass(frozen=True)
class Accuracy(_Section):
    vs_eager: VsEager
    vs_teacher: VsTeacher | None = _omitted()


@dataclass(frozen=True)
class Speed(_Section):
    """Energy+forces of the ~300-atom water cluster, compiled and eager (acceptance.measure_speed)."""

    system: str
    atoms: int
    edges: int
    threads: int
    compiled_ms: float
    eager_ms: float
    speedup_vs_eager: float


# BackendTrial.status: the one kept, the ones that passed acceptance but ran slower, and why the others lost
TRIAL_STATUSES = ("chosen", "slower", "failed acceptance", "lowering failed", "not installed")
_ACCEPTED = ("chosen", "slower")


@dataclass(frozen=True)
class BackendTrial(_Section):
    """One backend tried by `mlffc compile --backend auto`: its status (TRIAL_STATUSES), its
    compiled time on the ~300-atom system (ms, as speed.compiled_ms; null unless it passed
    acceptance) and, for every backend but the chosen one, why it lost."""

    backend: str
    status: str
    accepted: bool  # passed the acceptance check (compiled vs eager)
    ms: float | None
    reason: str | None


@dataclass(frozen=True)
class Manifest(_Section):
    """manifest.json. accuracy, speed and compile_seconds are None only while compile runs its
    checks on the artifact it is writing; an artifact in place has them."""

    schema_version: int
    created: str  # ISO 8601, UTC
    mlffc: str
    target: TargetInfo
    backend: BackendInfo
    built_on: Host
    device: DeviceInfo
    precision: str
    passes: tuple[PassRecord, ...]
    payload: dict[str, str]  # file name -> SHA-256 of every payload file (entry and libraries)
    model: ModelInfo
    units: dict[str, str]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    signature: dict  # graph.SIGNATURE
    capabilities: Capabilities
    accuracy: Accuracy | None = _omitted()
    speed: Speed | None = _omitted()
    compile_seconds: float | None = _omitted()
    backend_selection: tuple[BackendTrial, ...] | None = _omitted()  # --backend auto: every backend tried, in the order tried

    @classmethod
    def read(cls, artifact: Path) -> Manifest:
        """ARTIFACT/manifest.json, checked (from_dict): MlffcError naming the field for anything else."""
        artifact = Path(artifact)
        path = artifact / MANIFEST
        if not artifact.exists():
            raise MlffcError(f"artifact not found: {artifact}")
        if not path.is_file():
            raise MlffcError(f"{artifact} is not an mlffc artifact: it has no {MANIFEST}")
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_dict(cls, data, where: str = "", source: str = MANIFEST) -> Manifest:
        """The manifest in `data` (parsed JSON), after checking the schema version, then every
        field's presence, type and finiteness, then the values the runtimes rely on."""
        if not isinstance(data, dict):
            raise MlffcError(f"{source} is not a JSON object (it holds a {type(data).__name__}): not an mlffc manifest")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MlffcError(f"{source}: schema_version must be the integer {SCHEMA_VERSION}, got {version!r}")
        if version > SCHEMA_VERSION:
            raise MlffcError(f"{source}: manifest schema {version} is newer than this mlffc reads ({SCHEMA_VERSION}); upgrade mlffc")
        if version < SCHEMA_VERSION:
            raise MlffcError(f"{source}: manifest schema {version} is older than this mlffc reads ({SCHEMA_VERSION}); recompile the artifact")
        manifest = _read(cls, data, where, source)
        manifest._check_values(source)
        return manifest

    def write(self, artifact: Path) -> Manifest:
        """Write ARTIFACT/manifest.json, after checking it as `read` would (nothing is written
        otherwise); returns the manifest as a reader will see it."""
        checked = Manifest.from_dict(self.to_dict(), source=f"manifest for {artifact}")
        write_json(Path(artifact) / MANIFEST, checked.to_dict())
        return checked

    def _check_values(self, source: str) -> None:
        if self.target.device not in ("cpu", "cuda"):
            raise MlffcError(f"{source}: target.device must be cpu or cuda, got {self.target.device!r}")
        if self.target.threads < 1:
            raise MlffcError(f"{source}: target.threads must be >= 1, got {self.target.threads}")
        if not self.model.cutoff > 0:
            raise MlffcError(f"{source}: model.cutoff must be finite and > 0 Å, got {self.model.cutoff}")
        if not self.model.species or not all(1 <= z <= 118 for z in self.model.species):
            raise MlffcError(f"{source}: model.species must be a non-empty list of atomic numbers 1-118, got {list(self.model.species)!r}")
        hashes = {**{f"payload hash of {name!r}": digest for name, digest in self.payload.items()},
                  "model.checkpoint.sha256": self.model.checkpoint.sha256}
        for what, digest in hashes.items():
            if not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise MlffcError(f"{source}: {what} must be a SHA-256 in hex, got {digest!r}")
        for name in [self.backend.entry, *self.backend.libraries]:
            if name not in self.payload:
                raise MlffcError(f"{source}: {name!r} (backend entry or library) is not listed in payload: it would load unchecked")
        if self.backend_selection is not None:
            self._check_selection(source)

    def _check_selection(self, source: str) -> None:
        """backend_selection: each status known and consistent with accepted, ms and reason; exactly
        one chosen, the artifact's backend, and no faster accepted one."""
        for k, trial in enumerate(self.backend_selection):
            where = f"{source}: backend_selection[{k}] ({trial.backend})"
            if trial.status not in TRIAL_STATUSES:
                raise MlffcError(f"{where}: status must be one of {', '.join(TRIAL_STATUSES)}, got {trial.status!r}")
            if trial.accepted != (trial.status in _ACCEPTED):
                raise MlffcError(f"{where}: accepted is {trial.accepted} but status is {trial.status!r}")
            if (trial.ms is not None) != trial.accepted or (trial.ms is not None and not trial.ms > 0):
                raise MlffcError(f"{where}: ms must be a time > 0 for an accepted backend and null otherwise, got {trial.ms}")
            if (trial.reason is None) != (trial.status == "chosen"):
                raise MlffcError(f"{where}: reason must be null for the chosen backend and say why for every other, got {trial.reason!r}")
        chosen = [t for t in self.backend_selection if t.status == "chosen"]
        if len(chosen) != 1 or chosen[0].backend != self.backend.name:
            raise MlffcError(f"{source}: backend_selection must choose exactly one backend, the artifact's ({self.backend.name}), "
                             f"got {[t.backend for t in chosen]}")
        if any(t.ms < chosen[0].ms for t in self.backend_selection if t.status == "slower"):
            raise MlffcError(f"{source}: backend_selection lists an accepted backend faster than the chosen {chosen[0].backend}")


def host_description() -> Host:
    """This process's host, as `built_on` records it."""
    cuda = {}
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        cuda = {"cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(), "gpu_arch": f"sm_{major}{minor}"}
    return Host(machine=platform.machine(), cpu_capability=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__, **cuda)


def member(artifact: Path, name) -> Path:
    """ARTIFACT/name, refused unless it is a relative name that resolves (symlinks followed) to a
    file inside the artifact directory."""
    root = Path(artifact).resolve()
    if not isinstance(name, str) or not name or Path(name).is_absolute() or "\0" in name:
        raise MlffcError(f"{artifact}: manifest names the file {name!r}; only relative names inside the artifact are allowed")
    resolved = (root / name).resolve()
    if root not in resolved.parents:
        raise MlffcError(f"{artifact}: manifest file {name!r} resolves to {resolved}, outside the artifact directory: refused")
    return resolved


def verify_payload(artifact: Path, manifest: Manifest) -> None:
    """Every file the manifest names (payload and checkpoint) is inside the artifact and matches its SHA-256."""
    checkpoint = manifest.model.checkpoint
    for name, expected in {**manifest.payload, checkpoint.file: checkpoint.sha256}.items():
        path = member(artifact, name)
        if not path.is_file():
            raise MlffcError(f"{artifact}: payload file {name} is missing")
        if sha256_file(path) != expected:
            raise MlffcError(f"{artifact}: payload file {name} does not match its SHA-256 in the manifest (modified or corrupt)")


def check_compatible(manifest: Manifest) -> None:
    """Refuse an artifact this process cannot run, and say what to rebuild."""
    built, here, target = manifest.built_on, host_description(), manifest.target
    rebuild = f"rebuild it here with `mlffc compile --target {target.name}`"
    if built.torch.split("+")[0] != here.torch.split("+")[0]:
        raise MlffcError(f"artifact built with torch {built.torch}, this process has torch {here.torch}: {rebuild}")
    if target.device == "cpu":
        if built.machine != here.machine:
            raise MlffcError(f"artifact built for {built.machine} CPUs, this machine is {here.machine}: {rebuild}")
        if _cpu_level(built.cpu_capability) > _cpu_level(here.cpu_capability):
            raise MlffcError(f"artifact uses {built.cpu_capability} instructions, this CPU offers {here.cpu_capability}: {rebuild}")
    else:
        if here.gpu_arch is None:
            raise MlffcError(f"artifact targets {target.name} ({target.arch}) but no CUDA GPU is visible: {rebuild} on a GPU machine")
        if here.gpu_arch != built.gpu_arch:
            raise MlffcError(f"artifact built for {built.gpu_arch}, this GPU is {here.gpu_arch} ({here.gpu}): {rebuild}")


def _cpu_level(capability: str) -> int:
    return _CPU_LEVELS.index(capability) if capability in _CPU_LEVELS else 0


# Reading and writing by the dataclasses' annotations: str, int, float (finite), bool, X | None,
# tuple[X, ...] (a JSON list), dict[str, X], a section, or a bare dict (any JSON object, its
# numbers finite).

def _read(kind, value, where: str, source: str):
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if value is None else _read(inner, value, where, source)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise _mistyped(kind, value, where, source)
        hints = typing.get_type_hints(kind)
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(kind)})
        if unknown:
            raise MlffcError(f"{source}: manifest field {_join(where, unknown[0])} is not in schema {SCHEMA_VERSION}")
        read = {}
        for f in dataclasses.fields(kind):
            if f.name not in value and f.default is dataclasses.MISSING:
                raise MlffcError(f"{source}: manifest has no {_join(where, f.name)} ({_allowed(hints[f.name])})")
            read[f.name] = _read(hints[f.name], value.get(f.name), _join(where, f.name), source)
        return kind(**read)
    if kind is dict:
        if not isinstance(value, dict):
            raise _mistyped(kind, value, where, source)
        return _json_value(value, where, source)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        if not isinstance(value, dict):
            raise _mistyped(kind, value, where, source)
        return {k: _read(args[1], v, f"{where}[{k!r}]", source) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mistyped(kind, value, where, source)
        return tuple(_read(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise MlffcError(f"{source}: manifest field {where} is {value} (every number in a manifest must be finite)")
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _mistyped(kind, value, where, source)
    return value


def _json_value(value, where: str, source: str):
    """A copy of a free-form JSON value, refused where it holds a non-finite number or a non-JSON type."""
    if isinstance(value, float) and not math.isfinite(value):
        raise MlffcError(f"{source}: manifest field {where} is {value} (every number in a manifest must be finite)")
    if isinstance(value, dict):
        return {str(k): _json_value(v, _join(where, str(k)), source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise MlffcError(f"{source}: manifest field {where} holds a {type(value).__name__}, which JSON cannot hold")


def _write(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _write(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omitted") and getattr(value, f.name) is None)}
    if isinstance(value, dict):
        return {k: _write(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_write(v) for v in value]
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _allowed(kind) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return f"{_allowed(inner)} or null"
    if dataclasses.is_dataclass(kind) or kind is dict:
        return "an object"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        return f"an object of {_allowed(args[1]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"a list of {_allowed(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {str: "a string", int: "an integer", float: "a finite number", bool: "true or false"}[kind]


def _mistyped(kind, value, where: str, source: str) -> MlffcError:
    return MlffcError(f"{source}: manifest field {where} must be {_allowed(kind)}, got {value!r}"[:500])
