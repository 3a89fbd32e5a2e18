"""Atomic file writes (write to a temporary sibling, then rename, so no reader sees half a file)
and the one file hash (sha256_file)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from mlffc.errors import MlffcError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600, and a writer may replace the file: give it the permissions open() would
        tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | Path, may_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it takes the place of `path`. An
    existing `path` is replaced only when empty or when `may_replace(path)` returns (it raises
    MlffcError for anything not ours); it is checked again just before, moved aside, and deleted
    only once the new directory is in place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MlffcError(f"{path} is a file, not a directory: choose a directory for the output")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_UMASK)
    aside = None
    try:
        yield tmp
        if path.exists():
            if any(path.iterdir()):
                if may_replace is None:
                    raise MlffcError(f"{path} exists and is not empty; choose another directory")
                may_replace(path)
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, aside / path.name)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(aside / path.name, path)  # put the old one back
                raise
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def write_json(path: str | Path, payload: dict, strict: bool = True) -> None:
    """Standard JSON. strict (manifests, records): a NaN or infinity anywhere is refused, naming
    where, and nothing is written; otherwise (reports, whose failures already name them) they
    are written as null."""
    bad = non_finite_keys(payload)
    if bad and strict:
        raise MlffcError(f"refusing to write {path}: non-finite value at {', '.join(bad[:5])}")
    if bad:
        payload = _nulled(payload)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path):
    """The JSON value in `path`; a file that is not valid JSON (or not UTF-8) is an MlffcError
    naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MlffcError(f"{path} is not valid JSON: {exc}") from exc


def _nulled(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    return value


def non_finite_keys(value, where: str = "") -> list[str]:
    """Dotted paths of the NaN or infinite floats in a JSON-like value."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where or '.'} = {value}"]
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in non_finite_keys(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [bad for k, v in enumerate(value) for bad in non_finite_keys(v, f"{where}[{k}]")]
    return []


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
