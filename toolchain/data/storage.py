"""Labelled frames in memory and in HDF5 (format `mlffc-dataset`, version 2; spec in
docs/data-format.md): one file, or a dataset of shard files read as one."""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from mlffc.errors import MlffcError
from mlffc.io import atomic_path

FORMAT = "mlffc-dataset"
FORMAT_VERSION = 2  # 2: optional per-atom `atomic_energy` labels; version 1 files read unchanged
SPLITS = ("train", "val", "test")
PER_FRAME = ("natoms", "cell", "pbc", "energy", "stress", "energy_spread", "group", "split", "sampler")
PER_ATOM = ("numbers", "positions", "forces", "forces_spread", "hessian_direction", "hessian_product", "atomic_energy")
OPTIONAL = ("stress", "energy_spread", "forces_spread", "hessian_direction", "hessian_product", "atomic_energy")
_STRINGS = ("group", "sampler")
_RESERVED = ("format", "format_version", "content_sha256")
SHARD_NAME = "shard-{index:05d}-of-{count:05d}.h5"


@dataclass
class Frames:
    """B labelled frames; per-atom arrays are concatenated (N = natoms.sum()), float64 in eV and Å."""

    natoms: np.ndarray
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    group: np.ndarray
    split: np.ndarray
    sampler: np.ndarray
    stress: np.ndarray | None = None
    energy_spread: np.ndarray | None = None
    forces_spread: np.ndarray | None = None
    hessian_direction: np.ndarray | None = None
    hessian_product: np.ndarray | None = None
    atomic_energy: np.ndarray | None = None  # [N] eV: the teacher's per-atom partition of `energy`
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.natoms)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.natoms)]).astype(np.int64)

    def atoms(self, k: int) -> Atoms:
        start, stop = self.offsets[k], self.offsets[k + 1]
        return Atoms(numbers=self.numbers[start:stop], positions=self.positions[start:stop], cell=self.cell[k], pbc=self.pbc[k])

    def select(self, indices) -> "Frames":
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        offsets = self.offsets
        atom_index = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in indices]) if len(indices) else np.zeros(0, int)
        picked = {}
        for name in PER_FRAME:
            value = getattr(self, name)
            picked[name] = None if value is None else value[indices]
        for name in PER_ATOM:
            value = getattr(self, name)
            picked[name] = None if value is None else value[atom_index]
        return Frames(**picked, attrs=dict(self.attrs))

    def split_named(self, name: str) -> "Frames":
        if name not in SPLITS:
            raise MlffcError(f"unknown split '{name}'; splits are {', '.join(SPLITS)}")
        return self.select(self.split == SPLITS.index(name))

    @staticmethod
    def concatenate(parts: list["Frames"]) -> "Frames":
        merged = {}
        for f in fields(Frames):
            if f.name == "attrs":
                continue
            values = [getattr(p, f.name) for p in parts]
            merged[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        return Frames(**merged, attrs=dict(parts[0].attrs) if parts else {})


def content_sha256(frames: Frames) -> str:
    """Hash of the arrays (not the HDF5 container), stored in the file and checked on read."""
    digest = hashlib.sha256()
    for name in PER_FRAME + PER_ATOM:
        value = getattr(frames, name)
        if value is not None:
            digest.update(name.encode())
            if name in _STRINGS:
                digest.update("\x00".join(map(str, value.tolist())).encode())
            else:
                digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def check_frames(frames: Frames) -> None:
    """Refuse frames whose arrays are missing or disagree in length before anything is written."""
    if frames.natoms is None or np.ndim(frames.natoms) != 1 or (len(frames.natoms) and np.min(frames.natoms) < 1):
        raise MlffcError("natoms must be one count >= 1 per frame")
    frame_count, atom_count = len(frames.natoms), int(np.sum(frames.natoms))
    for name in PER_FRAME + PER_ATOM:
        value = getattr(frames, name)
        if value is None:
            if name not in OPTIONAL:
                raise MlffcError(f"frames lack the required array '{name}'")
            continue
        expected = frame_count if name in PER_FRAME else atom_count
        if len(value) != expected:
            raise MlffcError(f"array '{name}' has {len(value)} rows, expected {expected}")


def write_frames(path: str | Path, frames: Frames) -> None:
    """Write atomically (temporary file, then rename): a reader never sees half a file."""
    check_frames(frames)
    strings = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = FORMAT
            handle.attrs["format_version"] = FORMAT_VERSION
            for key, value in frames.attrs.items():
                handle.attrs[key] = json.dumps(value)
            handle.attrs["content_sha256"] = content_sha256(frames)
            handle.create_dataset("offsets", data=frames.offsets)
            for name in PER_FRAME + PER_ATOM:
                value = getattr(frames, name)
                if value is None:
                    continue
                if name in _STRINGS:
                    handle.create_dataset(name, data=value.astype(object), dtype=strings)
                else:
                    handle.create_dataset(name, data=value, compression="gzip" if value.size > 4096 else None)


def read_frames(path: str | Path, verify: bool = True) -> Frames:
    path = Path(path)
    if not path.is_file():
        raise MlffcError(f"dataset not found: {path}")
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != FORMAT:
                raise MlffcError(f"{path} is not an {FORMAT} file (format attribute: {handle.attrs.get('format')!r})")
            version = int(handle.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise MlffcError(f"{path} has format version {version}; this mlffc reads up to {FORMAT_VERSION}: upgrade mlffc")
            arrays = {}
            for name in PER_FRAME + PER_ATOM:
                if name in handle:
                    data = handle[name][()]
                    arrays[name] = np.array([s.decode() if isinstance(s, bytes) else s for s in data]) if name in _STRINGS else data
                elif name not in OPTIONAL:
                    raise MlffcError(f"{path}: required dataset '{name}' is missing")
            attrs = {k: json.loads(v) for k, v in handle.attrs.items() if k not in _RESERVED}
            stored_hash = handle.attrs.get("content_sha256")
    except MlffcError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise MlffcError(f"{path} is corrupt or truncated: {exc}") from exc
    frames = Frames(**arrays, attrs=attrs)
    try:
        check_frames(frames)
    except MlffcError as error:
        raise MlffcError(f"{path} is inconsistent: {error}") from None
    if verify and stored_hash != content_sha256(frames):
        raise MlffcError(f"{path}: content hash mismatch; the file was modified or is corrupt")
    return frames


def read_attrs(path: str | Path) -> dict:
    """The JSON attributes of a dataset file (teacher, sampler, plan, ...) without its arrays."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != FORMAT:
                raise MlffcError(f"{path} is not an {FORMAT} file (format attribute: {handle.attrs.get('format')!r})")
            return {k: json.loads(v) for k, v in handle.attrs.items() if k not in _RESERVED}
    except (OSError, KeyError, ValueError) as exc:
        raise MlffcError(f"{path} is corrupt or truncated: {exc}") from exc


def dataset_files(path: str | Path) -> list[Path]:
    """The files of a dataset: one file, every `*.h5` in a directory, or a glob pattern's
    matches; sorted by name, hidden files (unfinished writes) left out."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.h5") if not p.name.startswith("."))
        if not files:
            raise MlffcError(f"dataset directory {path} holds no .h5 files")
        return files
    files = sorted(Path(p) for p in glob.glob(str(path)) if not Path(p).name.startswith("."))
    if not files:
        raise MlffcError(f"dataset not found: {path}")
    return files


def read_dataset(path: str | Path, verify: bool = True) -> Frames:
    """All frames of a file, a directory of shards or a glob, as one Frames. Shards must come
    from the same teacher, and a group must have the same split in every shard."""
    files = dataset_files(path)
    parts = [read_frames(f, verify) for f in files]
    if len(parts) == 1:
        return parts[0]
    first = parts[0].attrs
    for f, part in zip(files[1:], parts[1:]):
        for key in ("teacher", "units"):
            if part.attrs.get(key) != first.get(key):
                raise MlffcError(f"{f} has another {key} than {files[0]}; a dataset holds the labels of one teacher")
    frames = Frames.concatenate(parts)
    splits = {name: sorted(set(frames.group[frames.split == k].tolist())) for k, name in enumerate(SPLITS)}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        shared = set(splits[SPLITS[a]]) & set(splits[SPLITS[b]])
        if shared:
            raise MlffcError(f"{path}: groups in both {SPLITS[a]} and {SPLITS[b]} splits: {', '.join(sorted(shared)[:5])}")
    families = {group: family for part in parts for group, family in part.attrs.get("families", {}).items()}
    frames.attrs = {k: v for k, v in first.items() if k != "shard"} | {"splits": splits, "families": families,
                                                                      "files": [f.name for f in files]}
    return frames


def element_counts(frames: Frames, elements) -> np.ndarray:
    """Atoms of each element (atomic numbers `elements`) in each frame [B, len(elements)]."""
    frame_of_atom = np.repeat(np.arange(len(frames)), frames.natoms)
    return np.stack([np.bincount(frame_of_atom[frames.numbers == z], minlength=len(frames)) for z in elements], axis=1)


def fit_element_energies(frames: Frames, elements) -> np.ndarray:
    """Per-element reference energies (eV), least squares of the frames' energies on their
    composition (frames with a finite energy only)."""
    counts, finite = element_counts(frames, elements), np.isfinite(frames.energy)
    reference, *_ = np.linalg.lstsq(counts[finite].astype(np.float64), frames.energy[finite], rcond=None)
    return reference
