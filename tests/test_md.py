"""MD checks: a molecule whose bond graph survives is stable, one pulled apart is not; the NVE drift is the fitted slope."""

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes

from mlffc.errors import MlffcError
from mlffc.md import bonds, energy_drift, langevin_stability


class _Pull(Calculator):
    """Harmonic bonds to the starting geometry, plus (if `pull`) a strong force separating atoms 0 and 1
    of the first molecule."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference, pull: bool):
        super().__init__()
        self.reference, self.pull = reference.copy(), pull

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        displacement = self.atoms.positions - self.reference
        forces = -20.0 * displacement
        if self.pull:
            direction = self.atoms.positions[1] - self.atoms.positions[0]
            direction /= np.linalg.norm(direction)
            forces[0] -= 5.0 * direction
            forces[1] += 5.0 * direction
        self.results = {"energy": float(10.0 * (displacement**2).sum()), "forces": forces}


def test_stable_and_broken_molecules_are_told_apart():
    from mlffc.data.samplers import gas_layout

    molecules = [molecule("CH3OH"), molecule("H2O")]
    assert len(bonds(molecules[0])) == 5 and len(bonds(molecules[1])) == 2
    system, _, _ = gas_layout(molecules)
    calm = langevin_stability(molecules, _Pull(system.positions, pull=False), 300.0, steps=200, check_interval=20)
    assert [r["stable"] for r in calm] == [True, True]
    pulled = langevin_stability(molecules, _Pull(system.positions, pull=True), 300.0, steps=400, check_interval=20)
    assert not pulled[0]["stable"] and 0 < pulled[0]["failed_after_ps"] <= 0.2 and pulled[1]["stable"]


def test_energy_drift_is_the_fitted_slope_per_atom():
    times = np.linspace(0.0, 2.0, 21)
    wobble = 1e-3 * np.sin(7 * times)
    drift = energy_drift(times, -50.0 + 0.3 * times + wobble, atoms=10)
    assert np.isclose(drift["drift_ev_per_atom_per_ps"], 0.03, rtol=0.05)
    assert 0 < drift["fluctuation_ev_per_atom"] < 1e-3 and np.isclose(drift["max_deviation_ev_per_atom"], 0.06, rtol=0.05)
    with pytest.raises(MlffcError, match="at least 2 finite energies"):
        energy_drift([0.0, 1.0], [1.0, np.nan], atoms=1)
