"""The artifact manifest: what was built, for what, from what, and how well it does.

A compiled artifact is native code: load only artifacts from a source you trust. Loading verifies
the SHA-256 of every payload file recorded here and refuses an artifact built for another
machine, device or torch release, saying what to rebuild.
"""

from __future__ import annotations

import json
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
    artifact = Path(artifact)
    path = artifact / MANIFEST
    if not artifact.exists():
        raise MlffcError(f"artifact not found: {artifact}")
    if not path.is_file():
        raise MlffcError(f"{artifact} is not an mlffc artifact: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MlffcError(f"{path} is not valid JSON: {exc}") from exc
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise MlffcError(f"{artifact}: manifest schema {version!r} is newer than this mlffc reads ({SCHEMA_VERSION}); upgrade mlffc")
    return manifest


def verify_payload(artifact: Path, manifest: dict) -> None:
    for name, expected in manifest["payload"].items():
        path = Path(artifact) / name
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
