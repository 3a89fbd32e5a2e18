"""Short MD runs that show whether a force field can be simulated: energy drift in NVE
(velocity Verlet) and the radial distribution function from NVT (Langevin), with ASE.
Any ASE calculator works: a compiled artifact's or a teacher's."""

from __future__ import annotations

import time

import numpy as np
from ase import Atoms, units
from ase.geometry.rdf import get_rdf
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlffc.errors import MlffcError


def _thermalise(atoms: Atoms, temperature: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities without centre-of-mass motion (nor rotation, for a molecule)."""
    thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def nve_drift(atoms: Atoms, calculator, steps: int, timestep_fs: float = 0.5, temperature: float = 300.0,
              seed: int = 0, interval: int = 10) -> dict:
    """Velocity-Verlet run from Maxwell-Boltzmann velocities. The drift is the slope of a linear
    fit to the total energy against time, |dE/dt| per atom (eV/atom/ps); the fluctuation is the
    spread about that line. A run that fails (non-finite energy, atoms on top of each other)
    reports `stable: False` and infinite drift instead of raising."""
    if steps < 2 * interval:
        raise MlffcError(f"NVE needs at least {2 * interval} steps to fit a drift, got {steps}")
    atoms = atoms.copy()
    atoms.calc = calculator
    _thermalise(atoms, temperature, seed)
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    times, energies = [], []

    def record():
        times.append(dynamics.get_time() / (1000 * units.fs))
        energies.append(atoms.get_total_energy())

    dynamics.attach(record, interval=interval)
    started = time.perf_counter()
    failure = _run(dynamics, steps)
    seconds = time.perf_counter() - started
    n = len(atoms)
    result = {"atoms": n, "steps": dynamics.nsteps, "timestep_fs": timestep_fs, "temperature_K": temperature,
              "duration_ps": dynamics.nsteps * timestep_fs / 1000, "seconds": seconds,
              "steps_per_s": dynamics.nsteps / seconds if seconds > 0 else float("nan")}
    energies = np.asarray(energies)
    if failure is None and len(energies) >= 2 and np.all(np.isfinite(energies)):
        result.update(stable=True, **energy_drift(times, energies, n))
    else:
        result.update(stable=False, failure=failure or "non-finite energy", drift_ev_per_atom_per_ps=float("inf"))
    return result


def energy_drift(times_ps, total_energies, atoms: int) -> dict:
    """The drift of an NVE run's total energy (eV) sampled at `times_ps`: |slope| of a linear fit
    per atom (eV/atom/ps), the spread about that line and the largest |E - E0|, per atom."""
    times, energies = np.asarray(times_ps, dtype=float), np.asarray(total_energies, dtype=float)
    if len(energies) < 2 or not np.all(np.isfinite(energies)):
        raise MlffcError(f"an energy drift needs at least 2 finite energies, got {energies.tolist()[:5]}")
    slope, intercept = np.polyfit(times, energies, 1)
    residual = energies - (slope * times + intercept)
    return {"drift_ev_per_atom_per_ps": float(abs(slope) / atoms), "fluctuation_ev_per_atom": float(residual.std() / atoms),
            "max_deviation_ev_per_atom": float(np.abs(energies - energies[0]).max() / atoms)}


def nvt_rdf(atoms: Atoms, calculator, steps: int, equilibration: int, elements: tuple[str, str] = ("O", "O"),
            rmax: float | None = None, nbins: int = 60, timestep_fs: float = 0.5, temperature: float = 300.0,
            friction_per_fs: float = 0.01, seed: int = 0, interval: int = 10) -> dict:
    """Langevin run of a periodic box: the partial RDF of `elements`, averaged over frames every
    `interval` steps after `equilibration` steps. rmax defaults to just under half the cell's
    shortest width (the largest ASE accepts)."""
    if not atoms.pbc.all():
        raise MlffcError("an RDF needs a periodic box")
    if steps < interval:
        raise MlffcError(f"NVT needs at least {interval} sampled steps, got {steps}")
    if rmax is None:  # the width of the cell along each direction is 1 / |reciprocal vector|
        rmax = 0.499 / np.linalg.norm(atoms.cell.reciprocal(), axis=1).max()
    atoms = atoms.copy()
    atoms.calc = calculator
    _thermalise(atoms, temperature, seed)
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=friction_per_fs / units.fs,
                        fixcm=False, rng=np.random.default_rng(seed + 1))
    frames = []
    started = time.perf_counter()
    failure = _run(dynamics, equilibration)
    if failure is None:
        dynamics.attach(lambda: frames.append(atoms.copy()), interval=interval)
        failure = _run(dynamics, steps)
    seconds = time.perf_counter() - started
    result = {"atoms": len(atoms), "steps": steps, "equilibration": equilibration, "timestep_fs": timestep_fs,
              "temperature_K": temperature, "frames": len(frames), "seconds": seconds, "stable": failure is None}
    if failure is not None:
        return {**result, "failure": failure}
    g, r = get_rdf(frames, rmax, nbins, elements=elements)
    return {**result, "r": r.tolist(), "g": g.tolist(),
            "temperature_mean_K": float(np.mean([f.get_temperature() for f in frames]))}


def _run(dynamics, steps: int) -> str | None:
    """Run `steps` steps; a failure of the force field becomes a message instead of an exception."""
    try:
        dynamics.run(steps)
    except (MlffcError, FloatingPointError) as error:
        return f"failed after {dynamics.nsteps} steps: {error}"
    energy = dynamics.atoms.get_potential_energy()
    return None if np.isfinite(energy) else f"non-finite energy after {dynamics.nsteps} steps"


def bonds(atoms: Atoms, scale: float = 1.25) -> set[tuple[int, int]]:
    """Covalent bonds: pairs nearer than `scale` times the sum of their covalent radii (ASE's)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist()) if a < b}


def langevin_stability(molecules: list[Atoms], calculator, temperature: float, steps: int, timestep_fs: float = 0.5,
                       check_interval: int = 100, max_force: float = 50.0, seed: int = 0) -> list[dict]:
    """Langevin MD of each molecule (all in one system, far apart, one call per step) for
    `steps` steps: a molecule is unstable from the first check at which its covalent bond graph
    differs from the start's (a bond broken or formed) or a force on it exceeds `max_force` eV/Å.
    Returns per molecule: stable, and the time (ps) of the first failure."""
    from mlffc.data.samplers import gas_layout

    system, slices, _ = gas_layout(molecules)
    system.calc = calculator
    _thermalise(system, temperature, seed)
    initial = [bonds(m) for m in molecules]
    failed: list[float | None] = [None] * len(molecules)
    dynamics = Langevin(system, timestep_fs * units.fs, temperature_K=temperature, friction=0.01 / units.fs,
                        fixcm=False, rng=np.random.default_rng(seed + 1))

    def check():
        forces = np.linalg.norm(system.get_forces(), axis=1)
        now = dynamics.nsteps * timestep_fs / 1000
        for k, part in enumerate(slices):
            if failed[k] is None:
                molecule = Atoms(numbers=system.numbers[part], positions=system.positions[part])
                if bonds(molecule) != initial[k] or forces[part].max() > max_force:
                    failed[k] = now

    dynamics.attach(check, interval=check_interval)
    started = time.perf_counter()
    failure = _run(dynamics, steps)
    seconds = time.perf_counter() - started
    if failure is not None:  # the whole system broke: every molecule still counted stable fails now
        failed = [dynamics.nsteps * timestep_fs / 1000 if f is None else f for f in failed]
    return [{"atoms": len(m), "formula": m.get_chemical_formula(), "stable": f is None, "failed_after_ps": f,
             "duration_ps": steps * timestep_fs / 1000, "seconds": seconds} for m, f in zip(molecules, failed)]
