"""The artifact manifest: what was built, for what, from what, and how well it does.

A compiled artifact is native code: load only artifacts from a source you trust. Loading verifies
the SHA-256 of every payload file recorded here and refuses an artifact built for another
machine, device or torch release, saying what to rebuild.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch

from mlffc.errors import MlffcError
from mlffc.io import sha256_file

MANIFEST = "manifest.json"
STUDENT_FILE = "student.safetensors"  # the eager student an artifact was compiled from, beside its payload
SCHEMA_VERSION = 2  # 2: passes with measured effects, backend versions and libraries, device, signature
_CPU_LEVELS = ("DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256")


def host_description() -> dict:
    """What the compiled code depends on: machine, CPU vector ISA, torch release, CUDA device."""
    host = {
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        host.update({"cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(), "gpu_arch": f"sm_{major}{minor}"})
    return host


def read_manifest(artifact: Path) -> dict:
    """The manifest, after check_schema: MlffcError naming the field for anything else."""
    artifact = Path(artifact)
    path = artifact / MANIFEST
    if not artifact.exists():
        raise MlffcError(f"artifact not found: {artifact}")
    if not path.is_file():
        raise MlffcError(f"{artifact} is not an mlffc artifact: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MlffcError(f"{path} is not valid JSON: {exc}") from exc
    check_schema(manifest, path)
    return manifest


# The fields the runtimes read: dotted path -> (type, what is allowed)
_FIELDS = {
    "target.name": (str, "a target name"),
    "target.device": (str, "cpu or cuda"),
    "target.threads": (int, "an integer >= 1"),
    "backend.name": (str, "a backend name"),
    "backend.entry": (str, "a payload file name"),
    "backend.libraries": (list, "a list of payload file names"),
    "built_on.machine": (str, "a machine name"),
    "built_on.cpu_capability": (str, "a CPU ISA name"),
    "built_on.torch": (str, "a torch version"),
    "payload": (dict, "file name -> SHA-256"),
    "precision": (str, "a precision name"),
    "model.species": (list, "a list of atomic numbers"),
    "model.cutoff": (float, "a finite cutoff > 0 Å"),
    "capabilities.periodic": (bool, "true or false"),
}


def check_schema(manifest, path: Path) -> None:
    """Refuse a manifest that is not an object of this schema, naming the field and what it must be."""
    if not isinstance(manifest, dict):
        raise MlffcError(f"{path} is not a JSON object (it holds a {type(manifest).__name__}): not an mlffc manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MlffcError(f"{path}: schema_version must be the integer {SCHEMA_VERSION}, got {version!r}")
    if version > SCHEMA_VERSION:
        raise MlffcError(f"{path}: manifest schema {version} is newer than this mlffc reads ({SCHEMA_VERSION}); upgrade mlffc")
    if version < SCHEMA_VERSION:
        raise MlffcError(f"{path}: manifest schema {version} is older than this mlffc reads ({SCHEMA_VERSION}); recompile the artifact")
    for name, (kind, allowed) in _FIELDS.items():
        value = manifest
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                raise MlffcError(f"{path}: manifest has no {name} ({allowed})")
            value = value[part]
        number = kind is float and isinstance(value, (int, float))
        if isinstance(value, bool) != (kind is bool) or not (isinstance(value, kind) or number):
            raise MlffcError(f"{path}: manifest field {name} must be {allowed}, got {value!r}")
    model, target, backend = manifest["model"], manifest["target"], manifest["backend"]
    if target["device"] not in ("cpu", "cuda"):
        raise MlffcError(f"{path}: target.device must be cpu or cuda, got {target['device']!r}")
    if target["threads"] < 1:
        raise MlffcError(f"{path}: target.threads must be >= 1, got {target['threads']}")
    if not (math.isfinite(model["cutoff"]) and model["cutoff"] > 0):
        raise MlffcError(f"{path}: model.cutoff must be finite and > 0 Å, got {model['cutoff']}")
    if not model["species"] or not all(isinstance(z, int) and not isinstance(z, bool) and 1 <= z <= 118 for z in model["species"]):
        raise MlffcError(f"{path}: model.species must be a non-empty list of atomic numbers 1-118, got {model['species']!r}")
    for name, digest in manifest["payload"].items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise MlffcError(f"{path}: payload hash of {name!r} must be a SHA-256 in hex, got {digest!r}")
    for name in [backend["entry"], *backend["libraries"]]:
        if not isinstance(name, str) or name not in manifest["payload"]:
            raise MlffcError(f"{path}: {name!r} (backend entry or library) is not listed in payload: it would load unchecked")


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


def verify_payload(artifact: Path, manifest: dict) -> None:
    """Every file the manifest names is inside the artifact and matches its SHA-256."""
    checkpoint = manifest["model"].get("checkpoint")
    files = dict(manifest["payload"])
    if isinstance(checkpoint, dict) and "file" in checkpoint:
        files[checkpoint["file"]] = checkpoint.get("sha256")
    for name, expected in files.items():
        path = member(artifact, name)
        if not path.is_file():
            raise MlffcError(f"{artifact}: payload file {name} is missing")
        if sha256_file(path) != expected:
            raise MlffcError(f"{artifact}: payload file {name} does not match its SHA-256 in the manifest (modified or corrupt)")


def check_compatible(manifest: dict) -> None:
    """Refuse an artifact this process cannot run, and say what to rebuild."""
    built = manifest["built_on"]
    here = host_description()
    rebuild = f"rebuild it here with `mlffc compile --target {manifest['target']['name']}`"
    if built["torch"].split("+")[0] != here["torch"].split("+")[0]:
        raise MlffcError(f"artifact built with torch {built['torch']}, this process has torch {here['torch']}: {rebuild}")
    if manifest["target"]["device"] == "cpu":
        if built["machine"] != here["machine"]:
            raise MlffcError(f"artifact built for {built['machine']} CPUs, this machine is {here['machine']}: {rebuild}")
        if _cpu_level(built["cpu_capability"]) > _cpu_level(here["cpu_capability"]):
            raise MlffcError(
                f"artifact uses {built['cpu_capability']} instructions, this CPU offers {here['cpu_capability']}: {rebuild}"
            )
    else:
        if "gpu_arch" not in here:
            raise MlffcError(f"artifact targets {manifest['target']['name']} ({manifest['target']['arch']}) but no CUDA GPU is visible: {rebuild} on a GPU machine")
        if here["gpu_arch"] != built.get("gpu_arch"):
            raise MlffcError(f"artifact built for {built.get('gpu_arch')}, this GPU is {here['gpu_arch']} ({here['gpu']}): {rebuild}")


def _cpu_level(capability: str) -> int:
    return _CPU_LEVELS.index(capability) if capability in _CPU_LEVELS else 0
