"""Seed structures: the bundled sets (closed-shell G2 molecules and S22 dimers from ASE,
scaffold-diverse drug-like molecules and BRICS fragments from MOSES, enumerated small molecules,
small bulk crystals) and a user's own file (SMILES or any structure file ASE reads).

Each seed is (group, structure); `structure.info["family"]` is its scaffold family (see
data.chemistry), and datasets are split by connected families, so no held-out molecule shares a
scaffold with a training molecule."""

from __future__ import annotations

import gzip
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states

from mlffc.data.chemistry import (FAMILY_SEPARATOR, SEEN_IN_TRAINING, SeedProblem, canonical, describe,
                                  molecule_from_smiles, rng_seed)
from mlffc.errors import MlffcError
from mlffc.progress import progress_bar

CHNO = {"H", "C", "N", "O"}
# Closed-shell by spin but outside what an ANI-style teacher describes: singlet methylene (a
# carbene), ozone (strongly multi-reference) and H2 (ANI-1x collapses it in MD).
OUTSIDE_TEACHER_DOMAIN = {"CH2_s1A1d", "O3", "H2"}

# Group: ase.build.bulk arguments (elements at ASE's reference lattice constants unless given).
CRYSTALS = {
    "Cu_fcc": dict(name="Cu"),
    "Al_fcc": dict(name="Al"),
    "Ni_fcc": dict(name="Ni"),
    "Ag_fcc": dict(name="Ag"),
    "Fe_bcc": dict(name="Fe"),
    "W_bcc": dict(name="W"),
    "Mg_hcp": dict(name="Mg"),
    "Ti_hcp": dict(name="Ti"),
    "Si_diamond": dict(name="Si"),
    "C_diamond": dict(name="C"),
    "NaCl_rocksalt": dict(name="NaCl", crystalstructure="rocksalt", a=5.64),
    "MgO_rocksalt": dict(name="MgO", crystalstructure="rocksalt", a=4.21),
    "GaAs_zincblende": dict(name="GaAs", crystalstructure="zincblende", a=5.65),
}
MAX_CRYSTAL_ATOMS = 32  # small cells: an Orb call on ~20 atoms costs ~0.1 s on a CPU


def seed_molecules(elements: Iterable[str] = CHNO) -> list[tuple[str, Atoms]]:
    """(group, molecule) pairs of molecules made of `elements` only; radicals and
    OUTSIDE_TEACHER_DOMAIN are left out. Each molecule is its own group; its family comes from
    bonds perceived by RDKit."""
    from ase.collections import g2, s22

    elements = set(elements)
    seeds = []
    for name, atoms in zip(g2.names, g2):
        closed_shell = not np.any(atoms.get_initial_magnetic_moments())
        usable = len(atoms) > 1 and closed_shell and name not in OUTSIDE_TEACHER_DOMAIN
        if usable and set(atoms.get_chemical_symbols()) <= elements:
            seeds.append((f"g2/{name}", _described(atoms)))
    for name, atoms in zip(s22.names, s22):
        if set(atoms.get_chemical_symbols()) <= elements:
            seeds.append((f"s22/{name}", _described(atoms)))
    return seeds


def _described(atoms: Atoms) -> Atoms:
    described = describe(_clean(atoms), None)
    if isinstance(described, str):  # a bundled molecule RDKit cannot perceive: a bug in the bundle
        raise MlffcError(f"bundled seed {atoms.get_chemical_formula()}: {described}")
    return described


def bundled_smiles_path(name: str) -> Path:
    """A bundled SMILES set: data/assets/<name>.smi.gz (provenance in data/assets/README.md)."""
    return Path(str(resources.files("mlffc.data") / "assets" / f"{name}.smi.gz"))


def seed_crystals(elements: Iterable[str] | None = None) -> list[tuple[str, Atoms]]:
    """(group, cell) pairs: per material of CRYSTALS made of `elements` only (all if None), its
    cubic (hcp: orthorhombic) cell, the primitive cell repeated 2x2x2 (a skewed cell) and the
    first repeated 2x2x2 when that stays within MAX_CRYSTAL_ATOMS. The material is the group, so
    a held-out material is unseen in training."""
    seeds = []
    for group, arguments in CRYSTALS.items():
        primitive = bulk(**arguments)
        if elements is not None and not set(primitive.get_chemical_symbols()) <= set(elements):
            continue
        conventional = bulk(**arguments, orthorhombic=True) if _is_hcp(arguments) else bulk(**arguments, cubic=True)
        cells = [conventional, primitive * (2, 2, 2), conventional * (2, 2, 2)]
        seeds += [(f"bulk/{group}", _clean(cell)) for cell in cells if len(cell) <= MAX_CRYSTAL_ATOMS]
    return seeds


SeedSet = Callable[[set[str], "int | None", int], "tuple[list[tuple[str, Atoms]], list[SeedProblem]]"]


def _built(make: Callable[[Iterable[str]], list[tuple[str, Atoms]]]) -> SeedSet:
    return lambda elements, limit, workers: (first_groups(make(elements), limit), [])


def _bundled(name: str) -> SeedSet:
    return lambda elements, limit, workers: smiles_seeds(bundled_smiles_path(name), elements, limit, workers)


# name: (elements, limit of groups, worker processes) -> (seeds, problems)
SEED_SETS: dict[str, SeedSet] = {
    "molecules": _built(seed_molecules),  # G2 + S22, CHNO, closed-shell
    "drug-like": _bundled("drug-like"),  # MOSES, one molecule per Bemis-Murcko scaffold, 18-25 heavy atoms
    "fragments": _bundled("fragments"),  # BRICS fragments of other MOSES molecules capped with H, 2-14 heavy atoms
    "small": _bundled("small"),  # every small CHNO molecule up to 5 heavy atoms, smallest first, no G2/S22 family
    "crystals": _built(seed_crystals),  # small bulk cells (periodic teachers)
}
SMILES_SUFFIXES = (".smi", ".smiles", ".smi.gz")
ON_PROBLEM = ("skip", "refuse")


def read_smiles_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, SMILES, name) of a SMILES file: one entry per line, the SMILES first, then an
    optional name (whitespace-separated; a name defaults to the line number); blank lines and
    lines starting with '#' are skipped. A name seen before gets '@<line>' appended, so groups
    stay distinct (in a file whose second column is not a name, such as MOSES's split column).
    Gzipped files are read as text."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise MlffcError(f"cannot read SMILES file {path}: {error}") from error
    entries, names = [], set()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        smiles, *rest = text.split(None, 1)
        name = rest[0].split()[0] if rest else str(number)
        name = f"{name}@{number}" if name in names else name
        names.add(name)
        entries.append((number, smiles, name))
    return entries


SPAWN = multiprocessing.get_context("spawn")  # the caller may hold JAX threads, which a fork would copy mid-flight


def _embed(task: tuple[str, str, set[str] | None]) -> Atoms | str:
    smiles, name, elements = task
    return molecule_from_smiles(smiles, elements, rng_seed(name, smiles))


def smiles_seeds(path: Path, elements: set[str] | None, limit: int | None = None, workers: int = 1,
                 ) -> tuple[list[tuple[str, Atoms]], list[SeedProblem]]:
    """Seeds from a SMILES file: the first `limit` usable entries (all if None), embedded in 3D
    (ETKDG, MMFF; `workers` processes), each its own group '<file stem>/<name>'. Entries the
    teacher cannot describe, that do not parse or embed, or repeat an earlier molecule come back
    as problems, naming their line."""
    stem = path.name.split(".")[0]
    seeds, problems, seen = [], [], {}
    entries = read_smiles_lines(path)
    with progress_bar(transient=True) as progress, ProcessPoolExecutor(workers, mp_context=SPAWN) if workers > 1 else _Serial() as pool:
        task = progress.add_task(f"3D conformers from {path.name}", total=limit or len(entries), status="RDKit ETKDG + MMFF")
        start = 0
        while start < len(entries) and (limit is None or len(seeds) < limit):
            wanted = len(entries) - start if limit is None else limit - len(seeds)
            chunk = entries[start : start + wanted]
            start += len(chunk)
            for (number, smiles, name), result in zip(chunk, pool.map(_embed, [(s, n, elements) for _, s, n in chunk])):
                where = f"{path.name}:{number}"
                key = result.info["smiles"] if isinstance(result, Atoms) else canonical(smiles)
                if isinstance(result, str):
                    problems.append(SeedProblem(where, smiles, result))
                elif key in seen:
                    problems.append(SeedProblem(where, smiles, f"the same molecule as line {seen[key]}"))
                else:
                    seen[key] = number
                    result.info["name"] = name
                    seeds.append((f"{stem}/{name}", result))
                    progress.advance(task)
    return seeds, problems


class _Serial:
    """The executor interface in this process (workers=1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items):
        return map(function, items)


def structure_seeds(path: Path, elements: set[str] | None) -> tuple[list[tuple[str, Atoms]], list[SeedProblem]]:
    """Seeds from any structure file ASE reads (extxyz, xyz, ASE db, ...): every structure, its
    group '<file stem>/<info name or index>'; bonds perceived by RDKit give molecules their
    scaffold family. Structures outside the teacher's domain come back as problems."""
    import ase.io

    try:
        structures = ase.io.read(path, index=":")
    except Exception as error:  # ASE raises many types for an unreadable file
        raise MlffcError(f"ASE cannot read {path} as structures: {error}") from error
    seeds, problems = [], []
    for index, atoms in enumerate(structures):
        where = f"{path.name}#{index}"
        result = describe(atoms, elements)
        if isinstance(result, str):
            problems.append(SeedProblem(where, atoms.get_chemical_formula(), result))
            continue
        name = str(atoms.info.get("name", index))
        seeds.append((f"{path.name.split('.')[0]}/{name}", result))
    return seeds, problems


def load_seeds(spec: str, elements: Iterable[str], on_problem: str = "skip", workers: int = 1,
               ) -> tuple[list[tuple[str, Atoms]], list[SeedProblem]]:
    """Seeds from a comma-separated list of bundled set names (SEED_SETS), each optionally with
    ':N' for its first N entries, and files (SMILES: .smi/.smiles[.gz]; anything else is read by
    ASE). With on_problem='refuse' any unusable entry is an MlffcError listing them; with 'skip'
    they are returned beside the seeds. Group names must be unique across the sources."""
    if on_problem not in ON_PROBLEM:
        raise MlffcError(f"on_problem must be one of {', '.join(ON_PROBLEM)}, not {on_problem!r}")
    elements = set(elements)
    seeds, problems = [], []
    owner: dict[str, int] = {}  # group -> the spec item that gave it (a set may give a group several cells)
    for index, item in enumerate(part.strip() for part in spec.split(",") if part.strip()):
        name, _, count = item.partition(":")
        path = Path(item)
        if name in SEED_SETS:
            found, trouble = SEED_SETS[name](elements, _count(count, item), workers)
        elif not path.is_file():
            raise MlffcError(f"seeds {item!r}: neither a bundled set ({', '.join(SEED_SETS)}) nor an existing file")
        else:
            found, trouble = (smiles_seeds(path, elements, None, workers) if path.name.endswith(SMILES_SUFFIXES)
                              else structure_seeds(path, elements))
        repeated = sorted({group for group, _ in found if owner.get(group, index) != index})
        if repeated:
            raise MlffcError(f"seed groups named twice (give entries distinct names): {', '.join(repeated[:5])}")
        owner.update((group, index) for group, _ in found)
        seeds += found
        problems += trouble
    if problems and on_problem == "refuse":
        listed = "\n  ".join(map(str, problems[:20]))
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise MlffcError(f"{len(problems)} seed entries cannot be used (--on-problem skip leaves them out):\n  {listed}{more}")
    return seeds, problems


def mark_seen_families(seeds: list[tuple[str, Atoms]], families: set[str]) -> int:
    """Mark the seeds whose family (any member's, for a complex) is in `families` as seen in
    training, so splits keep them out of validation and test; returns how many were marked."""
    marked = 0
    for _, atoms in seeds:
        if set(atoms.info.get("family", "").split(FAMILY_SEPARATOR)) & families:
            atoms.info[SEEN_IN_TRAINING] = True
            marked += 1
    return marked


def _count(text: str, item: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise MlffcError(f"seeds {item!r}: the count after ':' must be a positive integer")
    return int(text)


def first_groups(seeds: list[tuple[str, Atoms]], limit: int | None) -> list[tuple[str, Atoms]]:
    """The seeds of the first `limit` groups (all if None), in order."""
    if limit is None:
        return seeds
    kept: list[str] = []
    for group, _ in seeds:
        if group not in kept:
            kept.append(group)
    kept = kept[:limit]
    return [(group, atoms) for group, atoms in seeds if group in kept]


def _is_hcp(arguments: dict) -> bool:
    structure = arguments.get("crystalstructure") or reference_states[atomic_numbers[arguments["name"]]]["symmetry"]
    return structure == "hcp"


def _clean(atoms: Atoms) -> Atoms:
    """Numbers, positions and (for a crystal) the cell only: no magnetic moments or calculators."""
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
