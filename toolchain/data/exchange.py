"""`mlffc data import` / `export`: labelled frames from any file `ase.io.read` reads (extxyz,
ASE db, ...) into the `mlffc-dataset` format, and back out as extxyz. Labels are taken in
eV, Å, eV/Å (ASE's units); where they came from is kept as the `label_source` attribute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from mlffc.data.storage import Frames
from mlffc.errors import MlffcError
from mlffc.units import UNITS


def _label(atoms: Atoms, where: str, key: str | None, kind: str):
    """One frame's energy, forces or stress: a plain info/arrays key when named, else the
    calculator's result (SinglePointCalculator); None only for a missing stress."""
    if key is not None:
        store = atoms.arrays if kind == "forces" else atoms.info
        if key in store:
            return np.asarray(store[key], dtype=np.float64)
        if kind == "stress":
            return None
        known = sorted(set(atoms.info) | set(atoms.arrays))
        raise MlffcError(f"{where}: no '{key}' {'array' if kind == 'forces' else 'info'} key for the {kind}; "
                         f"the frame holds {', '.join(known) or 'no keys'}")
    results = atoms.calc.results if atoms.calc is not None else {}
    if kind in results:
        return np.asarray(results[kind], dtype=np.float64)
    if kind == "stress":
        return None
    raise MlffcError(f"{where}: the frame carries no {kind} (calculator results: "
                     f"{', '.join(sorted(results)) or 'none'}); name an info/arrays key with --{kind}-key")


def _finite(value, where: str, name: str):
    if not np.all(np.isfinite(value)):
        raise MlffcError(f"{where}: {name} holds NaN or inf")
    return value


def _energy(value: np.ndarray, where: str, name: str = "energy") -> float:
    if value.size != 1:
        raise MlffcError(f"{where}: {name} must be one number (eV), got shape {value.shape}")
    return _finite(float(value.reshape(())), where, name)


def _forces(value: np.ndarray, natoms: int, where: str, name: str = "forces") -> np.ndarray:
    if value.shape != (natoms, 3):
        raise MlffcError(f"{where}: {name} have shape {value.shape}, expected ({natoms}, 3) in eV/Å")
    return _finite(value, where, name)


def _stress_matrix(value: np.ndarray, where: str) -> np.ndarray:
    if value.shape == (6,):  # Voigt order xx yy zz yz xz xy, as ASE stores it
        xx, yy, zz, yz, xz, xy = value
        matrix = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif value.shape in ((3, 3), (9,)):
        matrix = value.reshape(3, 3)
    else:
        raise MlffcError(f"{where}: stress has shape {value.shape}; allowed are 6 (Voigt) or 3x3 values in eV/Å³")
    return _finite(matrix, where, "stress")


def read_labelled(paths: list[Path], energy_key: str | None = None, forces_key: str | None = None,
                  stress_key: str | None = None, elements: set[str] | None = None,
                  reference_keys: tuple[tuple[str, str], ...] = ()) -> tuple[list[tuple[str, Atoms]], list[dict]]:
    """Every frame of every file with its labels, checked before anything is written; each
    (energy, forces) key pair of `reference_keys` read in the same pass into the label's
    `references`, under the name 'ENERGY_KEY,FORCES_KEY'."""
    from ase.io import read

    frames, labels = [], []
    for path in paths:
        if not path.is_file():
            raise MlffcError(f"file not found: {path}")
        try:
            read_frames = read(path, index=":")
        except Exception as exc:  # ase raises many types for an unknown or broken format
            raise MlffcError(f"{path}: cannot read it with ase.io.read ({type(exc).__name__}: {exc}); "
                             "allowed are formats ASE reads that carry energy and forces (extxyz, ASE db, ...)") from None
        if not read_frames:
            raise MlffcError(f"{path} holds no frames")
        for k, atoms in enumerate(read_frames):
            where = f"{path} frame {k}"
            if elements is not None:
                unknown = sorted(set(atoms.get_chemical_symbols()) - elements)
                if unknown:
                    raise MlffcError(f"{where}: element(s) {', '.join(unknown)} not known to the teacher; "
                                     f"allowed are {', '.join(sorted(elements))}")
            energy = _label(atoms, where, energy_key, "energy")
            forces = _label(atoms, where, forces_key, "forces")
            stress = _label(atoms, where, stress_key, "stress")
            if len(atoms) < 1:
                raise MlffcError(f"{where}: the frame has no atoms")
            if atoms.pbc.any() and not atoms.pbc.all():
                raise MlffcError(f"{where}: periodic in some directions only ({atoms.pbc.tolist()}); allowed are all or none")
            label = {"energy": _energy(energy, where), "forces": _forces(forces, len(atoms), where),
                     "stress": None if stress is None else _stress_matrix(stress, where),
                     "references": {f"{e},{f}": (_energy(_label(atoms, where, e, "energy"), where, f"{e},{f} energy"),
                                                 _forces(_label(atoms, where, f, "forces"), len(atoms), where, f"{e},{f} forces"))
                                    for e, f in reference_keys}}
            frames.append((f"{path.stem}/{k}", atoms))
            labels.append(label)
    return frames, labels


def import_frames(paths: list[Path], label_source: str, energy_key: str | None = None, forces_key: str | None = None,
                  stress_key: str | None = None, elements: set[str] | None = None) -> Frames:
    """The files' frames as Frames (all in the train split, one group per frame), attributes
    naming the units, the label source and the files."""
    return import_with_references(paths, label_source, energy_key, forces_key, stress_key, elements)[0]


def import_with_references(paths: list[Path], label_source: str, energy_key: str | None = None,
                           forces_key: str | None = None, stress_key: str | None = None,
                           elements: set[str] | None = None, reference_keys: tuple[tuple[str, str], ...] = ()
                           ) -> tuple[Frames, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """`import_frames`, plus each (energy, forces) key pair of `reference_keys` as further labels
    of the same frames: {'ENERGY_KEY,FORCES_KEY': (energy [frames], forces [atoms, 3])}, from one read."""
    if not label_source.strip():
        raise MlffcError("--label-source must name where the labels come from, e.g. 'DFT (ORCA wB97X/6-31G*)'")
    structures, labels = read_labelled(paths, energy_key, forces_key, stress_key, elements, tuple(reference_keys))
    names = [f"{e},{f}" for e, f in reference_keys]
    references = {name: (np.array([lab["references"][name][0] for lab in labels]),
                         np.concatenate([lab["references"][name][1] for lab in labels])) for name in names}
    with_stress = [lab["stress"] is not None for lab in labels]
    if any(with_stress) and not all(with_stress):
        first = with_stress.index(not with_stress[0])
        raise MlffcError(f"frame {first} ({structures[first][0]}) {'has' if with_stress[first] else 'lacks'} a stress "
                         "unlike the first frame; stress must be on every frame or none")
    atoms_list = [a for _, a in structures]
    symbols = sorted({s for a in atoms_list for s in a.get_chemical_symbols()})
    return Frames(
        natoms=np.array([len(a) for a in atoms_list], dtype=np.int64),
        numbers=np.concatenate([a.numbers for a in atoms_list]).astype(np.uint8),
        positions=np.concatenate([a.positions for a in atoms_list]).astype(np.float64),
        cell=np.stack([a.cell.array for a in atoms_list]).astype(np.float64),
        pbc=np.stack([np.full(3, a.pbc.any()) for a in atoms_list]),
        energy=np.array([lab["energy"] for lab in labels]),
        forces=np.concatenate([lab["forces"] for lab in labels]),
        stress=np.stack([lab["stress"] for lab in labels]) if all(with_stress) else None,
        group=np.array([g for g, _ in structures]),
        sampler=np.array(["imported"] * len(atoms_list)),
        split=np.zeros(len(atoms_list), dtype=np.uint8),
        attrs={"units": UNITS, "label_source": label_source,
               "teacher": {"name": label_source, "family": "imported", "elements": symbols},
               "imported_from": [str(p) for p in paths]},
    ), references


def export_extxyz(frames: Frames, out: Path) -> None:
    """Write the frames as extxyz with their labels as SinglePointCalculator results (energy,
    forces, stress if present), atomically."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from mlffc.io import atomic_path

    offsets, images = frames.offsets, []
    for k in range(len(frames)):
        atoms = frames.atoms(k)
        results = {"energy": float(frames.energy[k]), "forces": frames.forces[offsets[k]:offsets[k + 1]]}
        if frames.stress is not None:
            results["stress"] = frames.stress[k]
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["group"] = str(frames.group[k])
        images.append(atoms)
    with atomic_path(out) as tmp:
        write(tmp, images, format="extxyz")


def is_dataset_path(path: Path) -> bool:
    """An mlffc-dataset (HDF5 file, directory of shards or glob) rather than a file for ase.io."""
    return Path(path).is_dir() or Path(path).suffix.lower() in (".h5", ".hdf5") or any(c in str(path) for c in "*?[")
