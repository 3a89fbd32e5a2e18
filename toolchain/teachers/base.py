"""The one teacher API: ASE structures in; energy (eV), forces (eV/Å), stress (eV/Å³) and spread out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlffc.structures import check_structures


@dataclass(frozen=True)
class Capabilities:
    stress: bool = False
    periodic: bool = False
    charge_spin: bool = False
    uncertainty: bool = False


@dataclass
class Labels:
    """Labels for a batch of structures: per-structure arrays of length B, per-atom arrays
    concatenated over the batch (N = natoms.sum()), all float64 in eV, Å."""

    natoms: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None = None
    energy_spread: np.ndarray | None = None
    forces_spread: np.ndarray | None = None

    def split_forces(self) -> list[np.ndarray]:
        return np.split(self.forces, np.cumsum(self.natoms)[:-1])


@dataclass(frozen=True)
class TeacherInfo:
    name: str
    family: str
    elements: tuple[str, ...]
    cutoff: float
    capabilities: Capabilities
    source: dict = field(default_factory=dict)  # files and hashes, versions, random-init seed


class Teacher(ABC):
    """A reference model. Subclasses convert their native units once, in `_compute`."""

    info: TeacherInfo

    def compute(self, structures: Sequence[Atoms]) -> Labels:
        structures = list(structures)
        check_structures(structures, self.info.elements, allow_periodic=self.info.capabilities.periodic)
        return self._compute(structures)

    @abstractmethod
    def _compute(self, structures: list[Atoms]) -> Labels: ...

    def calculator(self) -> "TeacherCalculator":
        return TeacherCalculator(self)


class TeacherCalculator(Calculator):
    """ASE calculator over any teacher; the ensemble spread lands in `results['energy_spread']`."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, teacher: Teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        labels = self.teacher.compute([self.atoms])
        self.results = {
            "energy": float(labels.energy[0]),
            "free_energy": float(labels.energy[0]),
            "forces": labels.forces.copy(),
        }
        if labels.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(labels.stress[0])
        if labels.energy_spread is not None:
            self.results["energy_spread"] = float(labels.energy_spread[0])
