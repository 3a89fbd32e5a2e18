"""Generate configurations from seeds, label them with a teacher, split by molecule."""

from __future__ import annotations

import zlib
from dataclasses import asdict

import numpy as np
from ase import Atoms

from mlffc.data.mutate import mutate_seeds, parent_group
from mlffc.data.samplers import SamplingConfig, crystal_md, gas_md, rattle, strain
from mlffc.data.storage import SPLITS, Frames
from mlffc.progress import console, progress_bar
from mlffc.structures import closest_pair
from mlffc.teachers import Teacher
from mlffc.units import UNITS

LABEL_BATCH_ATOMS = 2048


def sample_configurations(
    seeds: list[tuple[str, Atoms]], teacher: Teacher, config: SamplingConfig
) -> list[tuple[str, str, Atoms]]:
    """(group, sampler, structure) for every kept configuration. Molecule seeds are first
    extended by their mutants. Rattles and strains (crystals) use one RNG stream per group (from
    config.seed and the group name), drawn by its seeds in turn; MD runs all molecules together and
    each crystal on its own, per temperature."""
    molecules = [(group, atoms) for group, atoms in seeds if not atoms.pbc.any()]
    if config.mutants_per_seed and molecules:
        with console.status(f"making and relaxing up to {config.mutants_per_seed} mutants per molecule"):
            seeds = seeds + mutate_seeds(molecules, config.mutants_per_seed, teacher, np.random.default_rng([config.seed, 1]))
    sampled = []
    streams: dict[str, np.random.Generator] = {}
    for group, atoms in seeds:
        rng = streams.setdefault(group, np.random.default_rng([config.seed, zlib.crc32(group.encode())]))
        sampled.append((group, "seed", atoms.copy()))
        for scale in config.rattle_scales:
            sampled += [(group, f"rattle{scale:g}", f) for f in rattle(atoms, scale, config.rattles_per_scale, rng)]
        if atoms.pbc.all():
            for scale in config.strain_scales:
                sampled += [(group, f"strain{scale:g}", f) for f in strain(atoms, scale, config.strains_per_scale, rng)]
    molecules = [(group, atoms) for group, atoms in seeds if not atoms.pbc.any()]
    crystals = [(group, atoms) for group, atoms in seeds if atoms.pbc.all()]
    temperatures = config.md_temperatures if config.md_steps >= config.md_interval else ()
    with progress_bar() as progress:
        task = progress.add_task("teacher MD", total=len(temperatures) * (bool(molecules) + len(crystals)), status="")
        for temperature in temperatures:
            rng = np.random.default_rng([config.seed, int(temperature)])
            if molecules:
                progress.update(task, status=f"{temperature:g} K, {len(molecules)} molecules")
                trajectories = gas_md([atoms for _, atoms in molecules], teacher, temperature, config, rng)
                for (group, _), frames in zip(molecules, trajectories):
                    sampled += [(group, f"md{temperature:g}K", f) for f in frames]
                progress.advance(task)
            for group, atoms in crystals:
                progress.update(task, status=f"{temperature:g} K, {group} ({len(atoms)} atoms)")
                sampled += [(group, f"md{temperature:g}K", f) for f in crystal_md(atoms, teacher.calculator(), temperature, config, rng)]
                progress.advance(task)
    return [(group, sampler, f) for group, sampler, f in sampled if closest_pair(f, config.min_distance) is None]


def label(sampled: list[tuple[str, str, Atoms]], teacher: Teacher) -> Frames:
    structures = [atoms for _, _, atoms in sampled]
    parts = []
    with progress_bar() as progress:
        task = progress.add_task("labelling", total=len(structures), status=teacher.info.name)
        start = 0
        while start < len(structures):
            stop, size = start, 0
            while stop < len(structures) and (size == 0 or size + len(structures[stop]) <= LABEL_BATCH_ATOMS):
                size += len(structures[stop])
                stop += 1
            parts.append(teacher.compute(structures[start:stop]))
            progress.advance(task, stop - start)
            start = stop
    natoms = np.concatenate([p.natoms for p in parts])

    def joined(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Frames(
        natoms=natoms,
        numbers=np.concatenate([a.numbers for a in structures]).astype(np.uint8),
        positions=np.concatenate([a.positions for a in structures]),
        cell=np.stack([a.cell.array for a in structures]),
        pbc=np.stack([a.pbc for a in structures]),
        energy=joined("energy"),
        forces=joined("forces"),
        stress=joined("stress"),
        energy_spread=joined("energy_spread"),
        forces_spread=joined("forces_spread"),
        group=np.array([g for g, _, _ in sampled]),
        sampler=np.array([s for _, s, _ in sampled]),
        split=np.zeros(len(natoms), dtype=np.uint8),
    )


def split_by_group(groups: np.ndarray, fractions: tuple[float, float], seed: int) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) assigned per seed molecule, so a molecule and its
    mutants never straddle splits."""
    families = np.array([parent_group(g) for g in groups.tolist()])
    names = sorted(set(families.tolist()))
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = max(1, round(fractions[0] * len(names)))
    n_test = max(1, round(fractions[1] * len(names)))
    code = {}
    for rank, k in enumerate(order):
        code[names[k]] = 1 if rank < n_val else 2 if rank < n_val + n_test else 0
    return np.array([code[g] for g in families.tolist()], dtype=np.uint8)


def generate(
    seeds: list[tuple[str, Atoms]],
    teacher: Teacher,
    config: SamplingConfig,
    holdout: tuple[float, float] = (0.1, 0.1),
) -> Frames:
    frames = label(sample_configurations(seeds, teacher, config), teacher)
    frames.split = split_by_group(frames.group, holdout, config.seed)
    frames.attrs = {
        "units": UNITS,
        "teacher": asdict(teacher.info),
        "sampler": asdict(config),
        "splits": {name: sorted(set(frames.group[frames.split == k].tolist())) for k, name in enumerate(SPLITS)},
    }
    return frames
