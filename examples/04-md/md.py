"""MD with a compiled artifact in ASE: Langevin at 300 K to equilibrate, then NVE (velocity
Verlet) from the equilibrated state. Writes md.json (drift, temperatures, speed), energy.png
(NVE total-energy drift) and temperature.png (both phases).

    python md.py ARTIFACT [--structure FILE] [--water N] [--langevin-steps 2000] [--nve-steps 4000] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import mlffc.runtime
from mlffc.data.clusters import molecular_cluster
from mlffc.io import write_json
from mlffc.md import energy_drift
from mlffc.plots import pyplot, save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path, help="a compiled artifact directory (mlffc compile)")
    parser.add_argument("--structure", type=Path, help="any file ASE reads (first frame); default: a periodic water box")
    parser.add_argument("--water", type=int, default=27, help="water molecules of the default box (27: a 9.3 Å cube)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, of the Langevin thermostat")
    parser.add_argument("--friction", type=float, default=0.01, help="1/fs, of the Langevin thermostat")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--langevin-steps", type=int, default=2000)
    parser.add_argument("--nve-steps", type=int, default=4000)
    parser.add_argument("--interval", type=int, default=10, help="record every N steps")
    parser.add_argument("--out", type=Path, default=Path("."), help="where md.json and the plots go")
    args = parser.parse_args()
    if args.nve_steps < 2 * args.interval or args.langevin_steps < 0:
        parser.error(f"--nve-steps must be at least 2 x --interval ({2 * args.interval}) and --langevin-steps >= 0")

    model = mlffc.runtime.load(args.artifact)  # checks the payload hashes and that this host can run it
    atoms = ase.io.read(args.structure) if args.structure else molecular_cluster("H2O", args.water, periodic=True)
    atoms.calc = model.calculator()  # Verlet neighbour list, rebuilt only when atoms moved more than the skin
    rng = np.random.default_rng(0)
    thermalize_momenta(atoms, args.temperature, rng=rng)
    Stationary(atoms)

    trace = {"phase": [], "time_ps": [], "temperature_K": [], "total_energy_eV": []}

    def record(dynamics, phase, start_ps):
        trace["phase"].append(phase)
        trace["time_ps"].append(start_ps + dynamics.get_time() / (1000 * units.fs))
        trace["temperature_K"].append(atoms.get_temperature())
        trace["total_energy_eV"].append(atoms.get_total_energy())

    timings = {}
    langevin = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                        friction=args.friction / units.fs, fixcm=False, rng=rng)
    langevin.attach(lambda: record(langevin, "langevin", 0.0), interval=args.interval)
    started = time.perf_counter()
    langevin.run(args.langevin_steps)
    timings["langevin"] = time.perf_counter() - started
    nve_start = args.langevin_steps * args.timestep / 1000
    verlet = VelocityVerlet(atoms, args.timestep * units.fs)
    verlet.attach(lambda: record(verlet, "nve", nve_start), interval=args.interval)
    started = time.perf_counter()
    verlet.run(args.nve_steps)
    timings["nve"] = time.perf_counter() - started

    phase = np.array(trace["phase"])
    t, temperature, energy = (np.array(trace[k]) for k in ("time_ps", "temperature_K", "total_energy_eV"))
    nve = phase == "nve"
    if not np.all(np.isfinite(energy)):
        raise SystemExit(f"the simulation reached a non-finite energy after {np.argmin(np.isfinite(energy)) * args.interval} steps")
    result = {
        "artifact": str(args.artifact), "atoms": len(atoms), "formula": atoms.get_chemical_formula(),
        "periodic": bool(atoms.pbc.any()), "timestep_fs": args.timestep, "thermostat_K": args.temperature,
        "langevin": {"steps": args.langevin_steps, "steps_per_s": args.langevin_steps / timings["langevin"] if args.langevin_steps else None,
                     "temperature_mean_K": float(temperature[~nve].mean()) if (~nve).any() else None},
        "nve": {"steps": args.nve_steps, "duration_ps": args.nve_steps * args.timestep / 1000,
                "steps_per_s": args.nve_steps / timings["nve"], "temperature_mean_K": float(temperature[nve].mean()),
                **energy_drift(t[nve], energy[nve], len(atoms))},
        "trace": trace,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "md.json", result)
    plot(t, temperature, energy, nve, result, args.out)
    n = result["nve"]
    print(f"{len(atoms)} atoms ({result['formula']}): Langevin {args.langevin_steps} steps at {args.temperature:.0f} K, "
          f"then NVE {args.nve_steps} steps ({n['duration_ps']:.2f} ps) at {n['steps_per_s']:.0f} steps/s")
    print(f"NVE drift {n['drift_ev_per_atom_per_ps']:.2e} eV/atom/ps, fluctuation {n['fluctuation_ev_per_atom']:.2e} eV/atom, "
          f"mean T {n['temperature_mean_K']:.0f} K -> {args.out / 'md.json'}, energy.png, temperature.png")


def plot(t, temperature, energy, nve, result, out: Path) -> None:
    plt = pyplot()
    natoms, drift = result["atoms"], result["nve"]["drift_ev_per_atom_per_ps"]
    fig, ax = plt.subplots(figsize=(6, 4))
    per_atom = (energy[nve] - energy[nve][0]) / natoms
    ax.plot(t[nve], 1e3 * per_atom, lw=1, label="total energy")
    slope, intercept = np.polyfit(t[nve], per_atom, 1)
    ax.plot(t[nve], 1e3 * (slope * t[nve] + intercept), "k--", lw=1, label=f"fit: drift {drift:.1e} eV/atom/ps")
    ax.set(xlabel="time (ps)", ylabel="E - E(0) (meV/atom)", title=f"NVE, {natoms} atoms, {result['timestep_fs']:g} fs steps")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "energy.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(t[~nve], temperature[~nve], lw=1, label="Langevin")
    ax.plot(t[nve], temperature[nve], lw=1, label="NVE")
    ax.axhline(result["thermostat_K"], color="k", ls=":", lw=1, label=f"thermostat {result['thermostat_K']:.0f} K")
    ax.set(xlabel="time (ps)", ylabel="temperature (K)", title=f"{result['formula']}, {natoms} atoms")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "temperature.png")


if __name__ == "__main__":
    main()
