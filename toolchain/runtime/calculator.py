"""ASE calculator over a compiled artifact, for MD: the neighbour list is a Verlet list
(mlffc.runtime.neighbours) rebuilt only when atoms have moved more than half the skin."""

from __future__ import annotations

import time

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlffc.runtime.neighbours import DEFAULT_SKIN, VerletList
from mlffc.structures import check_structures


class MlffcCalculator(Calculator):
    """Energy, forces and (periodic) stress. `neighbours` holds the rebuild counts;
    `neighbour_seconds` and `model_seconds` the time spent in each (for benchmarks)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, skin: float = DEFAULT_SKIN, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.neighbours = VerletList(model.cutoff, skin)
        self.neighbour_seconds = self.model_seconds = 0.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        started = time.perf_counter()
        if self.neighbours.stale(self.atoms):
            check_structures([self.atoms], self.model.elements, allow_periodic=self.model.periodic)
            self.neighbours.rebuild(self.atoms)
        graph = self.neighbours.graph(self.atoms)
        listed = time.perf_counter()
        energy, forces, stress = self.model.run(graph)
        self.neighbour_seconds += listed - started
        self.model_seconds += time.perf_counter() - listed
        energy = float(energy[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.cpu().numpy().astype(float)}
        if self.atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress[0].cpu().numpy().astype(float))
