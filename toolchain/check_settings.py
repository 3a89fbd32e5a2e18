"""What `mlffc check` holds an artifact to and how it simulates with it: dataclasses with no heavy
imports, so the CLI takes its option defaults from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    force_mae: float = 0.1  # eV/Å, against the teacher
    energy_mae_per_atom: float = 0.01  # eV/atom, against the teacher
    # eV/atom max |dE| per atom, and eV/Å max |dF| relative above metrics.FORCE_SCALE (as compile's
    # acceptance); None: the tolerance the artifact was accepted with (its precision and passes)
    compiled_vs_eager_forces: float | None = None
    compiled_vs_eager_energy_per_atom: float | None = None


@dataclass
class MdSettings:
    """The simulations of `mlffc check --md` (docs/runtime.md)."""

    molecule: str = "CH3CH2OH"  # ASE molecule name, for NVE in vacuum
    box_molecules: int = 27  # water molecules of the periodic box: 27 fill a 9.3 Å cube at ~1 g/cm³
    nve_steps: int = 1000
    nvt_steps: int = 1000  # sampled for the RDF, after `equilibration`
    equilibration: int = 250
    timestep_fs: float = 0.5
    temperature: float = 300.0  # K, initial velocities and thermostat


@dataclass
class MdLimits:
    drift: float = 1e-3  # eV/atom/ps, |slope| of the artifact's NVE total energy, each system
    rdf_error: float = 0.15  # mean |g_artifact(r) - g_teacher(r)| of the O-O RDF over its bins
