"""How `mlffc generate` samples configurations from seeds: one dataclass, no heavy imports, so the
CLI takes its option defaults from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SamplingConfig:
    mutants_per_seed: int = 3  # new molecules per seed, by H -> CH3/NH2/OH substitution (data.mutate)
    relax_fmax: float = 0.02  # eV/Å: molecules (seeds and mutants) are relaxed by the teacher first
    relax_steps: int = 100
    rattle_scales: tuple[float, ...] = (0.02, 0.05, 0.08)  # Å, Gaussian displacement std
    rattles_per_scale: int = 6
    normal_mode_temperatures: tuple[float, ...] = (300.0, 1000.0)  # K, Boltzmann amplitudes per mode
    normal_modes_per_temperature: int = 4  # samples per molecule and temperature (0: no Hessians needed)
    packed_systems: int = 0  # packed clusters and periodic boxes of random seed molecules, over all shards
    packed_atoms: tuple[int, int] = (10, 1000)  # size range, log-uniform
    packed_density: float = 0.8  # g/cm^3: liquid-like
    packed_periodic_fraction: float = 0.5  # the rest are clusters
    packed_rattle: float = 0.05  # Å: each packed molecule is rattled, so its internal geometry varies too
    strain_scales: tuple[float, ...] = (0.01, 0.03)  # std of the symmetric strain components (crystals only)
    strains_per_scale: int = 4
    md_temperatures: tuple[float, ...] = (300.0, 800.0)  # K
    md_steps: int = 80
    md_interval: int = 8  # keep every md_interval-th frame
    md_timestep: float = 0.5  # fs
    md_friction: float = 0.02  # 1/fs
    min_distance: float = 0.6  # Å: closer pairs are dropped as unphysical
    spread_quantile: float = 0.0  # per group, drop this fraction with the lowest ensemble spread per sqrt(atoms)
    duplicate_tolerance: float = 0.005  # Å: RMS difference of sorted pair distances below which frames of a group are duplicates
    hessian_vectors: int = 0  # frames per group labelled with one Hessian-vector product
    seed: int = 0
