"""Generate configurations from seeds, label them with a teacher, keep the informative ones, split
by molecule family. One call makes one shard: shard I of N takes every N-th seed family and every
N-th packed system, and its random streams derive from the seed and the shard, so a shard is the
same wherever and whenever it runs."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict

import numpy as np
from ase import Atoms

from mlffc.data.chemistry import FAMILY_SEPARATOR, SEEN_IN_TRAINING
from mlffc.data.clusters import packed_molecules
from mlffc.data.mutate import mutate_seeds, parent_group
from mlffc.data.sampling_config import SamplingConfig
from mlffc.data.samplers import (crystal_md, gas_md, normal_mode_samples, rattle, relax_molecules,
                                 strain)
from mlffc.data.select import groups_of, uncertain, without_duplicates
from mlffc.data.storage import SPLITS, Frames
from mlffc.data.validate import MAX_ROBUST_Z, energy_robust_z
from mlffc.errors import MlffcError
from mlffc.progress import console, progress_bar
from mlffc.structures import closest_pair, structure_batches
from mlffc.teachers import Teacher
from mlffc.units import UNITS

LABEL_BATCH_ATOMS = 4096  # atoms per teacher call (FeNNol's call size: padding then never grows past it)
PACKED_GROUP = "packed"  # group of a packed system: "packed/<split>/<index>"; its split is in its name


def families(seeds: list[tuple[str, Atoms]]) -> list[str]:
    """Seed groups in order of first appearance: the units shards and splits are made of."""
    return list(dict.fromkeys(group for group, _ in seeds))


HOLDOUT_MAX_UNIT_FRACTION = 0.02  # a split unit with more of the seed families than this always trains:
# hub chemistry (water, benzene and the S22 complexes that join them) must not leave training whole


def split_units(seeds: list[tuple[str, Atoms]]) -> dict[str, str]:
    """The unit of splitting of every seed family: families (data.chemistry: a Bemis-Murcko
    scaffold, or a complex's several) joined wherever one seed holds two, so a held-out unit
    shares no scaffold with any training seed. Seeds without a family (crystals) are their own
    unit. Returns {group: unit name (its smallest family)}."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    labels = {}
    for group, atoms in seeds:
        found = atoms.info.get("family")
        members = found.split(FAMILY_SEPARATOR) if found else [f"group:{group}"]
        for other in members[1:]:
            a, b = root(members[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
        labels[group] = members[0]
    return {group: root(label) for group, label in labels.items()}


def split_codes(seeds: list[tuple[str, Atoms]], fractions: tuple[float, float], seed: int) -> dict[str, int]:
    """Split code (0 train, 1 val, 2 test) of every seed family, from all seeds (not one shard's),
    so a family and its mutants land in one split whichever shard makes them. Units of
    `split_units` are drawn in random order into val and test until each holds its fraction of
    the families; units larger than HOLDOUT_MAX_UNIT_FRACTION stay in training, and so do units
    holding a seed marked SEEN_IN_TRAINING (a family a pretrained student was trained on: held
    out, it would flatter the fine-tuned student)."""
    units = split_units(seeds)
    members: dict[str, list[str]] = {}
    for group in families(seeds):
        members.setdefault(units[group], []).append(group)
    seen = {units[group] for group, atoms in seeds if atoms.info.get(SEEN_IN_TRAINING)}
    names = sorted(members)
    order = np.random.default_rng(seed).permutation(len(names))
    total = len(units)
    wanted = [max(1, round(fraction * total)) for fraction in fractions]
    largest = max(1, int(HOLDOUT_MAX_UNIT_FRACTION * total))
    filled, codes = [0, 0], {}
    for k in order:
        unit = names[k]
        code = 0
        if len(members[unit]) <= largest and unit not in seen:
            code = next((c + 1 for c in range(2) if filled[c] < wanted[c]), 0)
        if code:
            filled[code - 1] += len(members[unit])
        for group in members[unit]:
            codes[group] = code
    return codes


def split_of(group: str, codes: dict[str, int]) -> int:
    if group.startswith(PACKED_GROUP + "/"):
        return SPLITS.index(group.split("/")[1])
    return codes[parent_group(group)]


def shard_seeds(seeds: list[tuple[str, Atoms]], shard: int, shards: int) -> list[tuple[str, Atoms]]:
    mine = set(families(seeds)[shard::shards])
    return [(group, atoms) for group, atoms in seeds if group in mine]


def seeds_sha256(seeds: list[tuple[str, Atoms]]) -> str:
    """Identity of a seed list (groups, families and their training marks, elements, positions,
    cells): a shard made from other seeds is another dataset."""
    digest = hashlib.sha256()
    for group, atoms in seeds:
        digest.update(group.encode())
        digest.update(f"{atoms.info.get('family', '')}|{bool(atoms.info.get(SEEN_IN_TRAINING))}".encode())
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def sample_configurations(
    seeds: list[tuple[str, Atoms]], teacher: Teacher, config: SamplingConfig, shard: int = 0
) -> list[tuple[str, str, Atoms]]:
    """(group, sampler, structure) for every kept configuration. Molecule seeds are extended by
    their mutants and relaxed by the teacher (all at once); then each seed gives itself, rattles,
    strains (crystals), normal-mode samples (molecules, from the teacher's Hessian at the
    minimum) and MD frames. Rattles, strains and normal modes draw from one RNG stream per group
    (config.seed and the group name); mutants and MD from streams of the shard. Relaxation and
    MD run on `teacher.sampler()` (float32 where the teacher has it); Hessians on `teacher`
    itself (float32 second derivatives of ANI came out NaN for some molecules)."""
    sampler = teacher.sampler()
    molecules = [(group, atoms) for group, atoms in seeds if not atoms.pbc.any()]
    crystals = [(group, atoms) for group, atoms in seeds if atoms.pbc.all()]
    if molecules:
        if config.mutants_per_seed:
            molecules += mutate_seeds(molecules, config.mutants_per_seed, np.random.default_rng([config.seed, shard, 1]))
        with console.status(f"relaxing {len(molecules)} molecules with the teacher"):
            relaxed = relax_molecules([atoms for _, atoms in molecules], sampler, config.relax_fmax, config.relax_steps)
        molecules = [(group, atoms) for (group, _), atoms in zip(molecules, relaxed) if atoms is not None]
    hessians = {}
    if molecules and config.normal_modes_per_temperature and config.normal_mode_temperatures:
        with console.status(f"teacher Hessians of {len(molecules)} molecules for normal-mode sampling"):
            hessians = dict(zip((group for group, _ in molecules), teacher.hessians([atoms for _, atoms in molecules])))
    sampled = []
    for group, atoms in molecules + crystals:
        rng = np.random.default_rng([config.seed, zlib.crc32(group.encode())])
        sampled.append((group, "seed", atoms.copy()))
        for scale in config.rattle_scales:
            sampled += [(group, f"rattle{scale:g}", f) for f in rattle(atoms, scale, config.rattles_per_scale, rng)]
        if atoms.pbc.all():
            for scale in config.strain_scales:
                sampled += [(group, f"strain{scale:g}", f) for f in strain(atoms, scale, config.strains_per_scale, rng)]
        if group in hessians:
            for temperature in config.normal_mode_temperatures:
                frames = normal_mode_samples(atoms, hessians[group], temperature, config.normal_modes_per_temperature, rng)
                sampled += [(group, f"nm{temperature:g}K", f) for f in frames]
    temperatures = config.md_temperatures if config.md_steps >= config.md_interval else ()
    with progress_bar() as progress:
        task = progress.add_task("teacher MD", total=len(temperatures) * (bool(molecules) + len(crystals)), status="")
        for temperature in temperatures:
            rng = np.random.default_rng([config.seed, shard, int(temperature)])
            if molecules:
                progress.update(task, status=f"{temperature:g} K, {len(molecules)} molecules")
                trajectories = gas_md([atoms for _, atoms in molecules], sampler, temperature, config, rng)
                for (group, _), frames in zip(molecules, trajectories):
                    sampled += [(group, f"md{temperature:g}K", f) for f in frames]
                progress.advance(task)
            for group, atoms in crystals:
                progress.update(task, status=f"{temperature:g} K, {group} ({len(atoms)} atoms)")
                sampled += [(group, f"md{temperature:g}K", f) for f in crystal_md(atoms, sampler.calculator(), temperature, config, rng)]
                progress.advance(task)
    return [(group, sampler, f) for group, sampler, f in sampled if closest_pair(f, config.min_distance) is None]


def packed_configurations(
    seeds: list[tuple[str, Atoms]], codes: dict[str, int], config: SamplingConfig, holdout: tuple[float, float],
    periodic: bool, shard: int = 0, shards: int = 1,
) -> list[tuple[str, str, Atoms]]:
    """This shard's packed systems (every shards-th of config.packed_systems), each from its own
    RNG stream: a split drawn with the holdout fractions, a size log-uniform in
    config.packed_atoms, random seed molecules of that split (so no held-out molecule is seen in
    training), a cluster or (if `periodic`, with config.packed_periodic_fraction) a periodic box."""
    pools = {code: [atoms for group, atoms in seeds if not atoms.pbc.any() and codes[group] == code] for code in range(len(SPLITS))}
    weights = np.array([1 - sum(holdout), *holdout]) * np.array([len(pools[c]) > 0 for c in range(len(SPLITS))])
    if config.packed_systems and not weights.sum():
        raise MlffcError("packed systems need molecule seeds")
    sampled = []
    low, high = config.packed_atoms
    for index in range(shard, config.packed_systems, shards):
        rng = np.random.default_rng([config.seed, zlib.crc32(f"{PACKED_GROUP}/{index}".encode())])
        code = int(rng.choice(len(SPLITS), p=weights / weights.sum()))
        target = int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))
        box = periodic and rng.uniform() < config.packed_periodic_fraction
        chosen, size = [], 0
        while True:
            fitting = [m for m in pools[code] if size + len(m) <= target]
            if not fitting:
                break
            chosen.append(fitting[rng.integers(len(fitting))])
            size += len(chosen[-1])
        chosen = chosen or [min(pools[code], key=len)]
        atoms = packed_molecules(chosen, config.packed_density, rng, box, config.packed_rattle)
        sampled.append((f"{PACKED_GROUP}/{SPLITS[code]}/{index:05d}", "box" if box else "cluster", atoms))
    return sampled


def label(sampled: list[tuple[str, str, Atoms]], teacher: Teacher) -> Frames:
    structures = [atoms for _, _, atoms in sampled]
    labels = [None] * len(structures)
    with progress_bar() as progress:
        task = progress.add_task("labelling", total=len(structures), status=teacher.info.name)
        for batch in structure_batches(structures, LABEL_BATCH_ATOMS):
            computed = teacher.compute([structures[k] for k in batch])
            forces = computed.split_forces()
            spreads = [None] * len(batch) if computed.forces_spread is None else np.split(
                computed.forces_spread, np.cumsum(computed.natoms)[:-1])
            atomic = None if computed.atomic_energies is None else np.split(
                computed.atomic_energies, np.cumsum(computed.natoms)[:-1])
            for slot, k in enumerate(batch):
                labels[k] = {"energy": computed.energy[slot], "forces": forces[slot], "forces_spread": spreads[slot],
                             "stress": None if computed.stress is None else computed.stress[slot],
                             "energy_spread": None if computed.energy_spread is None else computed.energy_spread[slot],
                             "atomic_energy": None if computed.atomic_energies is None else atomic[slot]}
            progress.advance(task, len(batch))

    def joined(name, combine=np.array):
        values = [entry[name] for entry in labels]
        if all(v is None for v in values):
            return None
        if name == "stress":  # molecules labelled apart from periodic cells have no stress: zeros
            values = [np.zeros((3, 3)) if v is None else v for v in values]
        return None if any(v is None for v in values) else combine(values)

    return Frames(
        natoms=np.array([len(a) for a in structures], dtype=np.int64),
        numbers=np.concatenate([a.numbers for a in structures]).astype(np.uint8),
        positions=np.concatenate([a.positions for a in structures]),
        cell=np.stack([a.cell.array for a in structures]),
        pbc=np.stack([a.pbc for a in structures]),
        energy=joined("energy"),
        forces=joined("forces", np.concatenate),
        stress=joined("stress"),
        energy_spread=joined("energy_spread"),
        forces_spread=joined("forces_spread", np.concatenate),
        atomic_energy=joined("atomic_energy", np.concatenate),
        group=np.array([g for g, _, _ in sampled]),
        sampler=np.array([s for _, s, _ in sampled]),
        split=np.zeros(len(structures), dtype=np.uint8),
    )


def add_hessian_labels(frames: Frames, teacher: Teacher, per_group: int, seed: int) -> None:
    """Label `per_group` random frames of each group with one Hessian-vector product: a random
    unit direction v over the frame's atoms and the teacher's exact H v (eV/Å²); NaN elsewhere."""
    directions = np.full_like(frames.positions, np.nan)
    products = np.full_like(frames.positions, np.nan)
    picked = []
    for members in groups_of(frames):
        rng = np.random.default_rng([seed, zlib.crc32(str(frames.group[members[0]]).encode()), 3])
        for k in sorted(rng.choice(members, min(per_group, len(members)), replace=False)):
            v = rng.normal(size=(frames.natoms[k], 3))
            picked.append((int(k), v / np.linalg.norm(v)))
    offsets = frames.offsets
    structures = [frames.atoms(k) for k, _ in picked]
    with progress_bar() as progress:
        task = progress.add_task("Hessian-vector labels", total=len(picked), status=teacher.info.name)
        for batch in structure_batches(structures, LABEL_BATCH_ATOMS):
            chosen = [picked[slot] for slot in batch]
            hv = teacher.hessian_vector_products([structures[slot] for slot in batch], np.concatenate([v for _, v in chosen]))
            for (k, v), part in zip(chosen, np.split(hv, np.cumsum([len(v) for _, v in chosen])[:-1])):
                directions[offsets[k] : offsets[k + 1]] = v
                products[offsets[k] : offsets[k + 1]] = part
            progress.advance(task, len(chosen))
    frames.hessian_direction, frames.hessian_product = directions, products


def generate(
    seeds: list[tuple[str, Atoms]],
    teacher: Teacher,
    config: SamplingConfig,
    holdout: tuple[float, float] = (0.1, 0.1),
    shard: int = 0,
    shards: int = 1,
) -> Frames:
    """Shard `shard` of `shards` of the dataset `seeds` and `config` describe: sample, label,
    keep the frames the ensemble disagrees on (config.spread_quantile) and no near-duplicates,
    add Hessian-vector labels (config.hessian_vectors), assign splits."""
    units_of_work = len(families(seeds)) + config.packed_systems
    if not 0 <= shard < shards or shards > units_of_work:
        raise MlffcError(f"shard {shard} of {shards}: there are {units_of_work} units of work "
                         f"({len(families(seeds))} seed families, {config.packed_systems} packed systems)")
    codes = split_codes(seeds, holdout, config.seed)
    sampled = sample_configurations(shard_seeds(seeds, shard, shards), teacher, config, shard)
    sampled += packed_configurations(seeds, codes, config, holdout, teacher.info.capabilities.periodic, shard, shards)
    frames = label(sampled, teacher)
    frames = frames.select(energy_robust_z(frames) <= MAX_ROBUST_Z)  # what validation would call broken
    frames = frames.select(uncertain(frames, config.spread_quantile))
    frames = frames.select(without_duplicates(frames, config.duplicate_tolerance))
    if config.hessian_vectors:
        add_hessian_labels(frames, teacher, config.hessian_vectors, config.seed)
    frames.split = np.array([split_of(g, codes) for g in frames.group.tolist()], dtype=np.uint8)
    frames.attrs = {
        "units": UNITS,
        "teacher": asdict(teacher.info),
        "sampler": asdict(config),
        "plan": {"seeds": len(seeds), "seeds_sha256": seeds_sha256(seeds), "holdout": list(holdout), "shards": shards},
        "shard": {"index": shard, "labelled": len(sampled)},
        "splits": {name: sorted(set(frames.group[frames.split == k].tolist())) for k, name in enumerate(SPLITS)},
        "families": {group: atoms.info["family"] for group, atoms in shard_seeds(seeds, shard, shards) if "family" in atoms.info},
    }
    return frames
