"""ASE calculator over a compiled artifact (neighbour lists from vesin, built per call)."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress


class MlffcCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = self.model.compute(self.atoms)
        energy = float(result["energy"][0])
        self.results = {"energy": energy, "free_energy": energy, "forces": result["forces"][0]}
        if self.atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(result["stress"][0])
