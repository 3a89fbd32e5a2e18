"""The one teacher API: ASE structures in; energy (eV), forces (eV/Å), stress (eV/Å³) and spread out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlffc.errors import MlffcError
from mlffc.structures import CHARGE_SPIN_KEYS, check_structures, structure_batches
from mlffc.units import UNITS


@dataclass(frozen=True)
class Capabilities:
    stress: bool = False  # stress labels for periodic cells
    periodic: bool = False  # accepts periodic cells (periodic in all three directions)
    charge_spin: bool = False  # reads total charge and spin multiplicity from atoms.info
    uncertainty: bool = False  # ensemble spread labels
    hessian: bool = False  # exact Hessian-vector products and Hessians of the energy
    atomic_energies: bool = False  # a per-atom energy partition (summing to the energy), as atom-centred models have


@dataclass
class Labels:
    """Labels for a batch of structures: per-structure arrays of length B, per-atom arrays
    concatenated over the batch (N = natoms.sum()), all float64 in eV, Å. `stress` [B, 3, 3] is
    present when the batch holds a periodic cell and the teacher has stress (zeros for molecules)."""

    natoms: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None = None
    energy_spread: np.ndarray | None = None
    forces_spread: np.ndarray | None = None
    atomic_energies: np.ndarray | None = None  # [N], eV, summing per structure to `energy`

    def split_forces(self) -> list[np.ndarray]:
        return np.split(self.forces, np.cumsum(self.natoms)[:-1])


@dataclass(frozen=True)
class TeacherInfo:
    name: str
    family: str
    elements: tuple[str, ...]
    cutoff: float
    capabilities: Capabilities
    source: dict = field(default_factory=dict)  # files and hashes, versions, precision, random-init seed


class Teacher(ABC):
    """A reference model. Every teacher returns UNITS (eV, Å, eV/Å, eV/Å³); subclasses convert
    their native units once, in `_compute`."""

    info: TeacherInfo
    units = UNITS

    def compute(self, structures: Sequence[Atoms]) -> Labels:
        structures = list(structures)
        check_structures(structures, self.info.elements, allow_periodic=self.info.capabilities.periodic)
        if not self.info.capabilities.charge_spin:
            _refuse_charge_spin(structures, self.info.name)
        return self._compute(structures)

    @abstractmethod
    def _compute(self, structures: list[Atoms]) -> Labels: ...

    def hessian_vector_products(self, structures: Sequence[Atoms], directions: np.ndarray) -> np.ndarray:
        """H v for each structure: `directions` [N, 3] (concatenated over the batch, eV and Å) in,
        the energy Hessian times them [N, 3] in eV/Å² out, exact (no finite differences)."""
        structures = self._check_hessian(structures)
        directions = np.asarray(directions, dtype=np.float64)
        natoms = sum(len(a) for a in structures)
        if directions.shape != (natoms, 3):
            raise MlffcError(f"directions have shape {directions.shape}; the structures need ({natoms}, 3)")
        return self._hessian_vector_products(structures, directions[None])[0]

    def hessians(self, structures: Sequence[Atoms]) -> list[np.ndarray]:
        """The full energy Hessian [3n, 3n] (eV/Å², rows and columns atom-major, x y z) of each
        structure. The structures of one batch are independent, so column d of every structure
        comes from one product with the d-th unit vector of each: 3 * max(n) products a batch."""
        structures = self._check_hessian(structures)
        hessians: list[np.ndarray] = [np.empty(0)] * len(structures)
        for chunk in structure_batches(structures, HESSIAN_BATCH_ATOMS, order=np.argsort([len(a) for a in structures])):
            sizes = [3 * len(structures[k]) for k in chunk]
            starts = np.concatenate([[0], np.cumsum(sizes)])
            directions = np.zeros((max(sizes), starts[-1]))
            for start, size in zip(starts, sizes):
                directions[np.arange(size), start + np.arange(size)] = 1.0
            columns = self._hessian_vector_products([structures[k] for k in chunk], directions.reshape(len(directions), -1, 3))
            columns = columns.reshape(len(directions), -1)
            for k, start, size in zip(chunk, starts, sizes):
                block = columns[:size, start : start + size].T  # column d of H: product with unit vector d
                hessians[k] = (block + block.T) / 2
        return hessians

    def _hessian_vector_products(self, structures: list[Atoms], directions: np.ndarray) -> np.ndarray:
        """[D, N, 3] products for D directions [D, N, 3] at once (teachers with capabilities.hessian)."""
        raise NotImplementedError

    def _check_hessian(self, structures: Sequence[Atoms]) -> list[Atoms]:
        if not self.info.capabilities.hessian:
            raise MlffcError(f"teacher '{self.info.name}' gives no Hessians; use a FeNNol teacher (ani1x, ani1ccx, fennol:PATH)")
        structures = list(structures)
        check_structures(structures, self.info.elements, allow_periodic=self.info.capabilities.periodic)
        return structures

    def sampler(self) -> "Teacher":
        """The teacher that drives sampling (relaxation, MD, normal-mode Hessians), where rounding
        does not reach the labels: itself, or a faster precision of it."""
        return self

    def calculator(self) -> "TeacherCalculator":
        return TeacherCalculator(self)


def _refuse_charge_spin(structures: list[Atoms], name: str) -> None:
    """A teacher without charge/spin inputs describes neutral singlets: say so rather than ignore them."""
    defaults = {"charge": 0, "spin": 1}
    for index, atoms in enumerate(structures):
        for key in CHARGE_SPIN_KEYS:
            if key in atoms.info and atoms.info[key] != defaults[key]:
                raise MlffcError(
                    f"structure {index} ({atoms.get_chemical_formula()}): {key}={atoms.info[key]!r}, but teacher "
                    f"'{name}' takes no charge or spin (it models neutral systems); use a teacher with charge/spin"
                )


HESSIAN_BATCH_ATOMS = 4096  # atoms per Hessian batch (sorted by size): 3 * (largest structure) products each


class TeacherCalculator(Calculator):
    """ASE calculator over any teacher; the ensemble spread lands in `results['energy_spread']`."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, teacher: Teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def check_state(self, atoms, tol=1e-15):
        """ASE's checks plus total charge and spin in atoms.info, which charge/spin teachers read."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and any(atoms.info.get(k) != self.atoms.info.get(k) for k in CHARGE_SPIN_KEYS):
            changes.append("info")
        return changes

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
