"""Configuration samplers, all seeded: Gaussian rattling, random strains of crystal cells,
normal-mode sampling from the teacher's Hessian, teacher-driven Langevin MD (ASE), and teacher
relaxation of many molecules at once."""

from __future__ import annotations


import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.optimize import FIRE
from scipy.linalg import null_space
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from mlffc.data.sampling_config import SamplingConfig
from mlffc.errors import MlffcError
from mlffc.structures import closest_pair
from mlffc.teachers import Teacher


GAS_GAP = 12.0  # Å between molecules in gas_md: beyond any teacher's cutoff


def rattle(atoms: Atoms, scale: float, count: int, rng: np.random.Generator) -> list[Atoms]:
    frames = []
    for _ in range(count):
        frame = atoms.copy()
        frame.positions = atoms.positions + rng.normal(0.0, scale, atoms.positions.shape)
        frames.append(frame)
    return frames


def strain(atoms: Atoms, scale: float, count: int, rng: np.random.Generator) -> list[Atoms]:
    """Copies of a periodic cell under random symmetric strains (cell and atoms scaled together):
    the energy-volume and stress labels a rattle alone does not give."""
    frames = []
    for _ in range(count):
        epsilon = rng.normal(0.0, scale, (3, 3))
        frame = atoms.copy()
        frame.set_cell(atoms.cell.array @ (np.eye(3) + (epsilon + epsilon.T) / 2), scale_atoms=True)
        frames.append(frame)
    return frames


def crystal_md(
    crystal: Atoms, calculator: Calculator, temperature: float, config: SamplingConfig, rng: np.random.Generator
) -> list[Atoms]:
    """Langevin MD of one periodic cell at fixed cell (cells cannot share one system as molecules
    do in gas_md: one teacher call per step per cell). Returns every md_interval-th frame; stops
    early, keeping earlier frames, if the teacher refuses a collapsed cell."""
    system = crystal.copy()
    system.set_constraint(FixCom())
    system.calc = calculator
    thermalize_momenta(system, temperature_K=temperature, rng=rng)
    Stationary(system)
    dynamics = _langevin(system, temperature, config, rng)
    frames = []
    for _ in range(config.md_steps // config.md_interval):
        try:
            dynamics.run(config.md_interval)
        except MlffcError:
            break
        frames.append(Atoms(numbers=crystal.numbers, positions=system.positions, cell=crystal.cell, pbc=True))
    return frames


NORMAL_MODE_MIN_WAVENUMBER = 50.0  # cm^-1: softer (and imaginary) modes are not sampled


def normal_modes(atoms: Atoms, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational normal modes of a molecule from its Cartesian Hessian [3n, 3n] (eV/Å²):
    eigenvalues w² (eV/(Å² amu)) of the mass-weighted Hessian with rigid translations and
    rotations projected out, and the modes as Cartesian displacements per unit mass-weighted
    amplitude [M, n, 3] (M = 3n - 6, or 3n - 5 for a linear molecule)."""
    if not np.isfinite(hessian).all():
        raise MlffcError(f"the teacher's Hessian of {atoms.get_chemical_formula()} has non-finite entries")
    masses = np.repeat(atoms.get_masses(), 3)
    centred = atoms.positions - atoms.get_center_of_mass()
    root = np.sqrt(atoms.get_masses())[:, None]
    rigid = [np.tile(np.eye(3)[a], (len(atoms), 1)) * root for a in range(3)]
    rigid += [np.cross(np.eye(3)[a], centred) * root for a in range(3)]
    vibrations = null_space(np.stack([r.ravel() for r in rigid]), rcond=1e-8)  # orthonormal complement
    weighted = hessian / np.sqrt(np.outer(masses, masses))
    w2, vectors = np.linalg.eigh(vibrations.T @ weighted @ vibrations)
    modes = (vibrations @ vectors).T / np.sqrt(masses)
    return w2, modes.reshape(len(w2), len(atoms), 3)


def normal_mode_samples(
    atoms: Atoms, hessian: np.ndarray, temperature: float, count: int, rng: np.random.Generator
) -> list[Atoms]:
    """Classical Boltzmann samples of the harmonic potential around a minimum (ANI's normal-mode
    sampling): each mode's amplitude is Gaussian with variance kT / w², so each sampled mode
    holds kT/2 of harmonic energy on average. Modes below NORMAL_MODE_MIN_WAVENUMBER (soft
    torsions, imaginary modes of an imperfect minimum) would get unbounded amplitudes and are
    left to MD."""
    w2, modes = normal_modes(atoms, hessian)
    wavenumber = np.sqrt(np.clip(w2, 0, None)) * units._hbar * units.J * units.s / units.invcm
    keep = wavenumber > NORMAL_MODE_MIN_WAVENUMBER
    w2, modes = w2[keep], modes[keep]
    frames = []
    for _ in range(count):
        amplitudes = rng.normal(size=len(w2)) * np.sqrt(units.kB * temperature / w2)
        frame = atoms.copy()
        frame.positions = atoms.positions + np.einsum("m,mia->ia", amplitudes, modes)
        frames.append(frame)
    return frames


# Å: a relaxed molecule with atoms this close collapsed in the shared relaxation (bonds to H
# are ~1 Å); looser than the sampling cut (SamplingConfig.min_distance) since it judges minima
RELAXED_MIN_DISTANCE = 0.8


def relax_molecules(molecules: list[Atoms], teacher: Teacher, fmax: float, steps: int) -> list[Atoms | None]:
    """All molecules relaxed together with FIRE on the teacher (one batched call per step, gas
    layout); None for any that collapses (two atoms nearer than RELAXED_MIN_DISTANCE)."""
    if not molecules:
        return []
    system, slices, corners = gas_layout(molecules)
    system.set_constraint(FixCom())
    system.calc = GasCalculator(teacher, slices)
    try:
        FIRE(system, logfile=None).run(fmax=fmax, steps=steps)
    except MlffcError as error:
        raise MlffcError(f"relaxing molecules with the teacher failed: {error}") from error
    relaxed = []
    for molecule, atoms_slice, corner in zip(molecules, slices, corners):
        frame = Atoms(numbers=molecule.numbers, positions=system.positions[atoms_slice] - corner)
        relaxed.append(frame if closest_pair(frame, RELAXED_MIN_DISTANCE) is None else None)
    return relaxed


def _langevin(system: Atoms, temperature: float, config: SamplingConfig, rng: np.random.Generator) -> Langevin:
    return Langevin(system, timestep=config.md_timestep * units.fs, temperature_K=temperature,
                    friction=config.md_friction / units.fs, fixcm=False, rng=rng)


def gas_layout(molecules: list[Atoms]) -> tuple[Atoms, list[slice], list[np.ndarray]]:
    """All molecules in one Atoms, centred on the sites of a cubic grid spaced farther apart than
    any teacher's cutoff, so one teacher call evaluates them all without interaction. Returns the
    system, each molecule's atom slice and its grid corner (subtract it to get the molecule back)."""
    spacing = max(np.ptp(m.positions, axis=0).max() for m in molecules) + GAS_GAP
    side = int(np.ceil(len(molecules) ** (1 / 3)))
    corners = [spacing * np.array([k % side, (k // side) % side, k // side**2]) for k in range(len(molecules))]
    starts = np.cumsum([0] + [len(m) for m in molecules])
    system = Atoms(
        numbers=np.concatenate([m.numbers for m in molecules]),
        positions=np.concatenate([m.positions - m.positions.mean(axis=0) + c for m, c in zip(molecules, corners)]),
    )
    return system, [slice(a, b) for a, b in zip(starts[:-1], starts[1:])], corners


class GasCalculator(Calculator):
    """A teacher over a gas_layout system: the molecules go to the teacher as one batch of
    separate structures (each with its own small neighbour list) and the results are joined."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, teacher: Teacher, slices: list[slice]):
        super().__init__()
        self.teacher, self.slices = teacher, slices

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        molecules = [Atoms(numbers=self.atoms.numbers[s], positions=self.atoms.positions[s]) for s in self.slices]
        labels = self.teacher.compute(molecules)
        energy = float(labels.energy.sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": labels.forces}


def gas_md(
    molecules: list[Atoms], teacher: Teacher, temperature: float, config: SamplingConfig, rng: np.random.Generator
) -> list[list[Atoms]]:
    """Langevin MD of all molecules at once in a gas_layout: one batched teacher call per step for
    the whole set. Langevin friction acts per atom, so each molecule is thermostatted on its own.
    Returns every md_interval-th frame of each molecule; a molecule that collapses (two atoms
    nearer than config.min_distance, which a teacher outside its domain can cause) leaves the
    run, its earlier frames kept."""
    system, slices, corners = gas_layout(molecules)
    positions = {k: system.positions[s] for k, s in enumerate(slices)}
    velocities: dict[int, np.ndarray] = {}
    frames: list[list[Atoms]] = [[] for _ in molecules]
    alive = list(range(len(molecules)))
    for _ in range(config.md_steps // config.md_interval):
        system = Atoms(numbers=np.concatenate([molecules[k].numbers for k in alive]),
                       positions=np.concatenate([positions[k] for k in alive]))
        system.set_constraint(FixCom())
        starts = np.cumsum([0] + [len(molecules[k]) for k in alive])
        system.calc = GasCalculator(teacher, [slice(a, b) for a, b in zip(starts[:-1], starts[1:])])
        if velocities:
            system.set_velocities(np.concatenate([velocities[k] for k in alive]))
        else:
            thermalize_momenta(system, temperature_K=temperature, rng=rng)
            Stationary(system)
        dynamics = _langevin(system, temperature, config, rng)
        try:
            dynamics.run(config.md_interval)
            failure = None
        except MlffcError as error:  # the teacher refused a collapsed molecule: found below
            failure = error
        survivors = []
        for slot, k in enumerate(alive):
            atoms_slice = slice(starts[slot], starts[slot + 1])
            positions[k] = system.positions[atoms_slice].copy()
            velocities[k] = system.get_velocities()[atoms_slice]
            frame = Atoms(numbers=molecules[k].numbers, positions=positions[k] - corners[k])
            if closest_pair(frame, config.min_distance) is None:
                frames[k].append(frame)
                survivors.append(k)
        if failure is not None and len(survivors) == len(alive):
            raise failure
        alive = survivors
        if not alive:
            break
    return frames
