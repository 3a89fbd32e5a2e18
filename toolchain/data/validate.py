"""`mlffc data validate`: is a dataset fit to train on? Errors (any makes the command fail):
NaN/inf, atoms too close, energy and force outliers by robust statistics, near-duplicate frames,
elements the teacher does not know. Warnings: teacher elements the data never shows. Plus a
summary (sizes, samplers, splits, label ranges) and a PNG of the distributions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from ase.data import atomic_masses, chemical_symbols, covalent_radii
from vesin import NeighborList

from mlffc.data.select import duplicate_pairs, groups_of, normalised_spread
from mlffc.data.storage import OPTIONAL, SPLITS, Frames, element_counts, fit_element_energies
from mlffc.structures import closest_pair

MIN_DISTANCE = 0.5  # Å: nearer atoms are a sampling failure
CLOSEST_SEARCH = 2.0  # Å: nearest pairs are looked for this far (a farther one is reported as this)
MAX_ROBUST_Z = 20.0  # energy per atom: |x - median| / (1.4826 MAD) within its group above this is an outlier
ENERGY_SIGMA_FLOOR = 0.1  # eV/atom: a group of near-minimum frames has a tiny MAD, and a hard rattle is no error
MAX_FORCE_LOG_Z = 5.0  # the same on log |F| per element (force magnitudes are log-normal-like, with a long tail)
# eV/Å: a statistical force outlier is an error only beyond this; below it is a warning. A dataset
# of millions of atoms always holds some atoms past 5 robust sigmas (the recipe's 1.27 M atoms: 8,
# the largest hydrogens in 0.06 Å rattles at 36-49 eV/Å, real teacher labels); forces this large are not.
MAX_PLAUSIBLE_FORCE = 100.0
MIN_FRAMES_FOR_STATISTICS = 8  # energy outliers are judged in groups (or compositions) at least this large
# median over a frame's atoms of (nearest-neighbour distance / sum of covalent radii): ~1 in any
# molecule, liquid or solid; 1.9 in bohr, 10 in nm-scaled-to-Å; above this the positions are not in Å
MAX_BOND_RATIO = 1.6
DENSITY_RANGE = (0.05, 30.0)  # g/cm³ of a periodic frame: gases at 1 bar (0.001) are not training data; osmium 22.6
DUPLICATE_TOLERANCE = 0.005  # Å, as in generation (SamplingConfig.duplicate_tolerance)
AMU_PER_A3_IN_G_PER_CM3 = 1.66053907
SIZE_BINS = (1, 11, 31, 101, 301, 1001)  # atoms per frame: 1-10, 11-30, 31-100, 101-300, 301-1000, more


@dataclass
class Finding:
    check: str
    level: str  # "ok", "warning" or "error"
    detail: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    closest: np.ndarray = field(default_factory=lambda: np.zeros(0))  # nearest pair per frame, Å (NaN: one atom)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def add(self, check: str, problems: list[str], level: str = "error", ok: str = "") -> None:
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            self.findings.append(Finding(check, level, f"{len(problems)}: " + "; ".join(problems[:5]) + more))
        else:
            self.findings.append(Finding(check, "ok", ok))


def validate(frames: Frames) -> Report:
    report = Report()
    offsets = frames.offsets

    def where(k: int) -> str:
        return f"frame {k} ({frames.group[k]}, {frames.sampler[k]})"

    report.add("finite values", _non_finite(frames), ok="no NaN or inf")
    closest = report.closest = np.array([_closest(frames, k) for k in range(len(frames))])
    report.add("interatomic distances", [f"{where(k)}: {closest[k]:.3f} Å" for k in np.flatnonzero(closest < MIN_DISTANCE)],
               ok=f"all >= {MIN_DISTANCE} Å (nearest {np.nanmin(closest):.3f} Å)")

    bonds = np.array([_bond_ratio(frames, k) for k in range(len(frames))])
    report.add("units of positions", [f"{where(k)}: nearest neighbours at {bonds[k]:.3g}x their covalent bond length"
                                      for k in np.argsort(-np.nan_to_num(bonds, nan=0.0)) if bonds[k] > MAX_BOND_RATIO],
               ok=f"typical nearest neighbours within {MAX_BOND_RATIO:g}x the covalent bond length (positions in Å)")
    density = _densities(frames)
    report.add("densities", [f"{where(k)}: {density[k]:.3g} g/cm³" for k in np.flatnonzero(
        (density < DENSITY_RANGE[0]) | (density > DENSITY_RANGE[1]))],
               ok=f"periodic frames within {DENSITY_RANGE[0]:g}-{DENSITY_RANGE[1]:g} g/cm³")

    per_atom = frames.energy / frames.natoms
    z = energy_robust_z(frames)
    report.add("energy outliers", [f"{where(k)}: {per_atom[k]:.4f} eV/atom, robust z {z[k]:.0f}" for k in np.argsort(-z)
                                   if z[k] > MAX_ROBUST_Z], ok=f"energy per atom within {MAX_ROBUST_Z:g} robust sigmas (at least {ENERGY_SIGMA_FLOOR} eV) of its group")
    magnitude = np.linalg.norm(frames.forces, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fz = _robust_z_within(np.log(magnitude), {z: np.flatnonzero(frames.numbers == z) for z in np.unique(frames.numbers)})
    # large forces only: small ones are relaxed geometries
    atom_frame = np.repeat(np.arange(len(frames)), frames.natoms)
    outliers = [a for a in np.argsort(-fz) if fz[a] > MAX_FORCE_LOG_Z]
    report.add("force outliers", [f"{where(atom_frame[a])} atom {a - offsets[atom_frame[a]]} "
                                  f"({chemical_symbols[frames.numbers[a]]}): |F| {magnitude[a]:.2f} eV/Å, robust z {fz[a]:.0f}"
                                  for a in outliers],
               level="error" if any(magnitude[a] > MAX_PLAUSIBLE_FORCE for a in outliers) else "warning",
               ok=f"log |F| within {MAX_FORCE_LOG_Z:g} robust sigmas per element (max {magnitude.max():.2f} eV/Å)")

    pairs = duplicate_pairs(frames, DUPLICATE_TOLERANCE)
    report.add("duplicates", [f"frames {i} and {j} ({frames.group[i]})" for i, j in pairs],
               ok=f"no two frames of a group within {DUPLICATE_TOLERANCE} Å")

    present = {chemical_symbols[z] for z in np.unique(frames.numbers)}
    teacher = frames.attrs.get("teacher", {})
    known = set(teacher.get("elements", present))
    report.add("elements vs teacher", [f"{e} is not among the elements of teacher {teacher.get('name', '?')}"
                                       for e in sorted(present - known)], ok=f"{', '.join(sorted(present))}")
    report.add("teacher coverage", [f"teacher element {e} never occurs" for e in sorted(known - present)], level="warning",
               ok="every teacher element occurs")

    splits = {name: set(frames.group[frames.split == k].tolist()) for k, name in enumerate(SPLITS)}
    report.add("splits", [f"group {g} in {a} and {b}" for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
                          for g in sorted(splits[a] & splits[b])],
               ok=", ".join(f"{name} {int((frames.split == k).sum())}" for k, name in enumerate(SPLITS)))

    sizes = np.histogram(frames.natoms, bins=[*SIZE_BINS, max(SIZE_BINS[-1] + 1, int(frames.natoms.max()) + 1)])[0]
    labels = [f"{a}-{b - 1}" for a, b in zip(SIZE_BINS, SIZE_BINS[1:])] + [f">={SIZE_BINS[-1]}"]
    report.summary = {
        "frames": len(frames), "atoms": int(frames.natoms.sum()), "groups": len(set(frames.group.tolist())),
        "atoms per frame": {"min": int(frames.natoms.min()), "median": float(np.median(frames.natoms)),
                            "max": int(frames.natoms.max())},
        "size histogram": dict(zip(labels, sizes.tolist())),
        "samplers": dict(Counter(_kind(s) for s in frames.sampler.tolist()).most_common()),
        "elements (atoms)": {chemical_symbols[z]: int(c) for z, c in zip(*np.unique(frames.numbers, return_counts=True))},
        "|F| eV/Å": {"median": float(np.median(magnitude)), "p99": float(np.percentile(magnitude, 99)),
                     "max": float(magnitude.max())},
        "periodic frames": int(frames.pbc.all(axis=1).sum()),
        "teacher": teacher.get("name"),
        "optional labels": [name for name in OPTIONAL if getattr(frames, name) is not None],
    }
    if frames.energy_spread is not None:
        spread = normalised_spread(frames)
        report.summary["energy spread / sqrt(atoms), meV"] = {"median": 1e3 * float(np.median(spread)),
                                                             "p99": 1e3 * float(np.percentile(spread, 99))}
    if frames.hessian_direction is not None:
        report.summary["frames with Hessian labels"] = int(np.isfinite(frames.hessian_direction[offsets[:-1], 0]).sum())
    return report


def plot(frames: Frames, report: Report, path) -> None:
    """The distributions behind the checks, one PNG."""
    from mlffc.plots import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    axes[0, 0].hist(frames.natoms, bins=np.geomspace(1, max(2, frames.natoms.max()) * 1.01, 40))
    axes[0, 0].set(xscale="log", yscale="log", xlabel="atoms per frame", ylabel="frames", title="sizes")
    axes[0, 1].hist(_composition_residual(frames), bins=80)
    axes[0, 1].set(yscale="log", xlabel="energy per atom minus a per-element fit (eV)", title="energy")
    magnitude = np.linalg.norm(frames.forces, axis=1)
    for z in np.unique(frames.numbers):
        axes[0, 2].hist(magnitude[frames.numbers == z], bins=80, histtype="step", label=chemical_symbols[z])
    axes[0, 2].set(yscale="log", xlabel="|F| (eV/Å)", title="forces per element")
    axes[0, 2].legend()
    axes[1, 0].hist(report.closest[np.isfinite(report.closest)], bins=80)
    axes[1, 0].axvline(MIN_DISTANCE, color="red")
    axes[1, 0].set(xlabel="nearest pair (Å)", ylabel="frames", title="nearest interatomic distance")
    if frames.energy_spread is not None:
        axes[1, 1].hist(1e3 * normalised_spread(frames), bins=80)
        axes[1, 1].set(yscale="log", xlabel="energy spread / sqrt(atoms) (meV)", title="ensemble disagreement")
    kinds = Counter(_kind(s) for s in frames.sampler.tolist())
    axes[1, 2].barh(list(kinds), list(kinds.values()))
    axes[1, 2].set(xscale="log", xlabel="frames", title="samplers")
    fig.tight_layout()
    save_figure(fig, path)


def energy_robust_z(frames: Frames) -> np.ndarray:
    """|robust z| of each frame's energy per atom within its group (or composition), with a sigma
    of at least ENERGY_SIGMA_FLOOR: above MAX_ROBUST_Z a frame has left the teacher's domain (a
    normal-mode sample at 1000 K pushed 2 eV/atom up a soft mode, a molecule torn apart)."""
    return np.abs(_robust_z_within(frames.energy / frames.natoms, _energy_populations(frames), floor=ENERGY_SIGMA_FLOOR))


def _composition_residual(frames: Frames) -> np.ndarray:
    """Energy per atom after a least-squares per-element reference: comparable across molecules."""
    elements = np.unique(frames.numbers)
    return (frames.energy - element_counts(frames, elements) @ fit_element_energies(frames, elements)) / frames.natoms


def _non_finite(frames: Frames) -> list[str]:
    problems = []
    for name in ("positions", "cell", "energy", "forces", "stress", "energy_spread", "forces_spread"):
        value = getattr(frames, name)
        if value is not None and not np.isfinite(value).all():
            problems.append(f"{name}: {int((~np.isfinite(value)).sum())} values")
    if frames.hessian_direction is not None:  # NaN marks an unlabelled frame: all of it, in both arrays
        for k, (start, stop) in enumerate(zip(frames.offsets[:-1], frames.offsets[1:])):
            block = np.concatenate([frames.hessian_direction[start:stop], frames.hessian_product[start:stop]])
            if np.isinf(block).any() or (np.isnan(block).any() and not np.isnan(block).all()):
                problems.append(f"Hessian labels of frame {k}: partly NaN or infinite")
    return problems


def _closest(frames: Frames, k: int) -> float:
    start, stop = frames.offsets[k], frames.offsets[k + 1]
    positions = frames.positions[start:stop]
    if stop - start < 2 or not np.isfinite(positions).all():
        return np.nan
    pair = closest_pair(frames.atoms(k), CLOSEST_SEARCH)
    return pair[2] if pair else CLOSEST_SEARCH


def _bond_ratio(frames: Frames, k: int) -> float:
    """Median over the frame's atoms of nearest-neighbour distance / sum of covalent radii (NaN
    for one atom or non-finite positions; inf when no atom has a neighbour within 2x bonding)."""
    start, stop = frames.offsets[k], frames.offsets[k + 1]
    positions, numbers = frames.positions[start:stop], frames.numbers[start:stop]
    if stop - start < 2 or not np.isfinite(positions).all():
        return np.nan
    radii = covalent_radii[numbers]
    periodic = bool(frames.pbc[k].all())
    cell = frames.cell[k] if periodic else np.zeros((3, 3))
    if periodic and not (np.isfinite(cell).all() and abs(np.linalg.det(cell)) > 1e-6):
        return np.nan
    search = MAX_BOND_RATIO * 2 * float(radii.max()) + 0.1
    i, j, d = NeighborList(cutoff=search, full_list=True).compute(positions, cell, periodic, "ijd")
    ratio = np.full(len(numbers), np.inf)
    np.minimum.at(ratio, i, d / (radii[i] + radii[j]))
    return float(np.median(ratio))


def _densities(frames: Frames) -> np.ndarray:
    """Mass density of each periodic frame (g/cm³; NaN for the others)."""
    density = np.full(len(frames), np.nan)
    mass = np.add.reduceat(atomic_masses[frames.numbers], frames.offsets[:-1]) if len(frames) else np.zeros(0)
    for k in np.flatnonzero(frames.pbc.all(axis=1)):
        volume = abs(np.linalg.det(frames.cell[k]))
        if np.isfinite(volume) and volume > 0:
            density[k] = mass[k] / volume * AMU_PER_A3_IN_G_PER_CM3
    return density


def _energy_populations(frames: Frames) -> dict[str, np.ndarray]:
    """Frames whose energies are compared: a group with enough frames, else the frames of one
    element composition (packed systems have unique compositions and are not judged)."""
    populations, leftovers = {}, []
    for members in groups_of(frames):
        if len(members) >= MIN_FRAMES_FOR_STATISTICS:
            populations[frames.group[members[0]]] = members
        else:
            leftovers.extend(members)
    by_formula: dict[bytes, list[int]] = {}
    for k in leftovers:
        by_formula.setdefault(np.sort(frames.numbers[frames.offsets[k] : frames.offsets[k + 1]]).tobytes(), []).append(k)
    for formula, members in by_formula.items():
        if len(members) >= MIN_FRAMES_FOR_STATISTICS:
            populations[f"composition {hash(formula)}"] = np.array(members)
    return populations


def _robust_z_within(values: np.ndarray, populations: dict, floor: float = 1e-12) -> np.ndarray:
    """(x - median) / max(1.4826 MAD, floor) within each population; 0 outside any and for
    non-finite values."""
    z = np.zeros(len(values))
    for members in populations.values():
        x = values[members]
        finite = np.isfinite(x)
        if finite.sum() < 2:
            continue
        median = np.median(x[finite])
        mad = 1.4826 * np.median(np.abs(x[finite] - median))
        z[members] = np.where(finite, (x - median) / max(mad, floor), 0.0)
    return z


def _kind(sampler: str) -> str:
    """`rattle0.05` -> `rattle`: the sampler without its setting."""
    return sampler.rstrip("0123456789.K") or sampler
