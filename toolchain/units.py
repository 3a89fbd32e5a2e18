"""Units at the API edge: eV, Å, eV/Å, eV/Å³. Teacher units are converted once, in each teacher wrapper."""

from ase import units as _ase_units

ENERGY = "eV"
LENGTH = "Angstrom"
FORCE = "eV/Angstrom"
STRESS = "eV/Angstrom^3"

HARTREE_TO_EV = float(_ase_units.Hartree)

UNITS = {"energy": ENERGY, "length": LENGTH, "forces": FORCE, "stress": STRESS}
