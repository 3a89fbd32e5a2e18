"""FeNNol teachers (JAX): one network or an ensemble of same-architecture networks evaluated
together (weights stacked, one vmapped call, one shared graph), in float64 by default."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlffc.errors import MlffcError
from mlffc.io import sha256_file
from mlffc.structures import structure_batches
from mlffc.teachers.base import Capabilities, Labels, Teacher, TeacherInfo
from mlffc.units import HARTREE_TO_EV

MAX_ATOMS_PER_CALL = 4096
MAX_PERIODIC_ATOMS_PER_CALL = 2048  # periodic inputs cost ~1.2 GB per 1000 dense atoms (FeNNol's CPU neighbour search)
HVP_DIRECTIONS = 8  # Hessian-vector products per vmapped call
PRECISIONS = {"float64": np.float64, "float32": np.float32}


class FennolTeacher(Teacher):
    """Mean (and spread) of one or more FeNNol `.fnx` networks sharing one architecture.

    The members' energies come from one vmapped call, and forces and virial from one gradient of
    their mean (with respect to positions and a strain), so work that does not depend on the
    weights (the graph, ANI's AEV and its backward) runs once: the 8-network ANI-1x costs ~1.5
    networks, with or without a periodic cell. Per-member forces (`force_spread=True`) need one
    backward per member and cost ~4x more.

    Inputs are padded (`use_atom_padding`): atom, system and neighbour counts only grow (for
    molecules and periodic cells apart), so a batch no larger than one seen before reuses the
    compiled code; `warm_up` at the largest
    size saves the recompilations (1-3 s each) on the way up. `precision='float64'` (default)
    enables JAX's float64 mode for the process: float32 totals at ~300 atoms carry ~80 meV of
    rounding."""

    def __init__(
        self, paths: Sequence[str | Path], name: str, precision: str = "float64", force_spread: bool = False
    ):
        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.is_file()]
        if not paths or missing:
            raise MlffcError(f"teacher '{name}': model file not found: {', '.join(missing) or '(no files given)'}")
        if precision not in PRECISIONS:
            raise MlffcError(f"teacher '{name}': precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        import jax

        if precision == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from fennol import FENNIX

        try:
            models = [FENNIX.load(p, use_atom_padding=True) for p in paths]
        except Exception as exc:  # a corrupt or foreign file: say which one
            raise MlffcError(f"teacher '{name}': could not load FeNNol model from {paths}: {exc}") from exc
        reference = models[0]
        for path, model in zip(paths[1:], models[1:]):
            if model._input_args != reference._input_args:
                raise MlffcError(f"teacher '{name}': {path} has another architecture than {paths[0]}; an ensemble needs one")
        # Padding state lives in a model's preprocessing: molecules and periodic cells pad apart, so
        # a large molecular batch never pads a dense periodic one (whose neighbour search it would bloat).
        self._preprocessors = {False: reference, True: FENNIX.load(paths[0], use_atom_padding=True)}
        self._dtype = PRECISIONS[precision]
        self._to_ev = HARTREE_TO_EV / reference.Ha_to_model_energy
        self._variables = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[m.variables for m in models])
        self._force_spread = force_spread
        self._paths, self._precision, self._sampler = paths, precision, None
        if force_spread:
            members = jax.vmap(lambda v, x: reference._energy_and_forces_and_virial(v, x)[:3], in_axes=(0, None))
            self._evaluate = jax.jit(members)
        else:
            self._evaluate = jax.jit(_mean_energy_forces_virial(reference))
        self._products = jax.jit(jax.vmap(_hessian_vector_product(reference), in_axes=(None, None, 0)))
        self.info = TeacherInfo(
            name=name,
            family="fennol",
            elements=_supported_elements(reference._input_args["modules"]),
            cutoff=float(reference.cutoff),
            capabilities=Capabilities(stress=True, periodic=True, uncertainty=len(models) > 1, hessian=True,
                                      atomic_energies=not force_spread),
            source={
                "files": [{"name": p.name, "sha256": sha256_file(p)} for p in paths],
                "members": len(models),
                "precision": precision,
                "fennol": version("fennol"),
                "jax": jax.__version__,
            },
        )

    def sampler(self) -> "FennolTeacher":
        """The same networks in float32 (about twice as fast): trajectories need no float64 totals."""
        if self._precision == "float32":
            return self
        if self._sampler is None:
            self._sampler = FennolTeacher(self._paths, self.info.name, "float32", self._force_spread)
        return self._sampler

    def warm_up(self, structures: Sequence[Atoms]) -> None:
        """Compile for the largest batch to come (label it once), so smaller ones reuse the code."""
        self.compute(structures)

    def _compute(self, structures: list[Atoms]) -> Labels:
        energy = np.empty(len(structures))
        energy_spread = np.empty(len(structures))
        forces = [None] * len(structures)
        forces_spread = [None] * len(structures)
        atomic = [None] * len(structures)
        stress = np.zeros((len(structures), 3, 3))
        for chunk in structure_batches(structures, MAX_ATOMS_PER_CALL, max_periodic_atoms=MAX_PERIODIC_ATOMS_PER_CALL):
            e, de, f, df, s, ea = self._compute_chunk([structures[k] for k in chunk])
            energy[chunk], energy_spread[chunk], stress[chunk] = e, de, s
            for k, fk, dfk, eak in zip(chunk, f, df, ea):
                forces[k], forces_spread[k], atomic[k] = fk, dfk, eak
        periodic = any(a.pbc.all() for a in structures)
        uncertainty = self.info.capabilities.uncertainty
        return Labels(
            natoms=np.array([len(a) for a in structures], dtype=np.int64),
            energy=energy,
            forces=np.concatenate(forces),
            stress=stress if periodic else None,
            energy_spread=energy_spread if uncertainty else None,
            forces_spread=np.concatenate(forces_spread) if uncertainty and self._force_spread else None,
            atomic_energies=None if self._force_spread else np.concatenate(atomic),
        )

    def _hessian_vector_products(self, structures: list[Atoms], directions: np.ndarray) -> np.ndarray:
        """Products of the members' mean energy Hessian with D directions, HVP_DIRECTIONS per
        vmapped call (the forward pass is shared by the directions of one call)."""
        products = np.empty_like(directions)
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in structures])])
        for chunk in structure_batches(structures, MAX_ATOMS_PER_CALL, max_periodic_atoms=MAX_PERIODIC_ATOMS_PER_CALL):
            atoms_index = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in chunk])
            prepared, _ = self._prepare([structures[k] for k in chunk])
            true_atoms = np.asarray(prepared["true_atoms"])
            width = min(HVP_DIRECTIONS, len(directions))  # one compiled width for labels (1), one for Hessians
            for start in range(0, len(directions), width):
                block = np.zeros((width, len(true_atoms), 3), dtype=self._dtype)
                count = min(width, len(directions) - start)
                block[:count, true_atoms] = directions[start : start + count][:, atoms_index]
                result = np.asarray(self._products(self._variables, prepared, block), dtype=np.float64)
                products[start : start + count, atoms_index] = result[:count, true_atoms] * self._to_ev
        return products

    def _prepare(self, structures: list[Atoms]):
        """FeNNol's padded inputs (graph included) for structures all periodic or all not, and
        their cells (None for molecules)."""
        natoms = np.array([len(a) for a in structures], dtype=np.int32)
        inputs = {
            "species": np.concatenate([a.numbers for a in structures]).astype(np.int32),
            "coordinates": np.concatenate([a.positions for a in structures]).astype(self._dtype),
            "natoms": natoms,
            "batch_index": np.repeat(np.arange(len(structures), dtype=np.int32), natoms),
        }
        cells = None
        if structures[0].pbc.all():
            cells = np.stack([a.cell.array for a in structures]).astype(self._dtype)
            inputs["cells"] = cells
            inputs["reciprocal_cells"] = np.linalg.inv(cells)
        return self._preprocessors[cells is not None].preprocess(**inputs), cells

    def _compute_chunk(self, structures: list[Atoms]):
        """One model call on structures that are all periodic or all not (structure_batches sees to it)."""
        natoms = np.array([len(a) for a in structures], dtype=np.int32)
        prepared, cells = self._prepare(structures)
        periodic = cells is not None
        true_atoms = np.asarray(prepared["true_atoms"])
        true_sys = np.asarray(prepared["true_sys"])
        if self._force_spread:
            e, f, virial = self._evaluate(self._variables, prepared)
            atomic = None
        else:
            e, f, virial, atomic = self._evaluate(self._variables, prepared)
            atomic = np.asarray(atomic, dtype=np.float64)[true_atoms] * self._to_ev
        e = np.asarray(e, dtype=np.float64)[:, true_sys] * self._to_ev
        f = np.asarray(f, dtype=np.float64)[..., true_atoms, :] * self._to_ev
        virial = np.asarray(virial, dtype=np.float64)[..., true_sys, :, :] * self._to_ev
        if f.ndim == 3:  # per-member forces and virials
            f_mean = f.mean(axis=0)
            f_spread = np.sqrt(((f - f_mean) ** 2).sum(axis=-1).mean(axis=0))
            virial = virial.mean(axis=0)
        else:
            f_mean, f_spread = f, None
        if periodic:  # ASE's convention: dE/dstrain / volume
            stress = virial / np.abs(np.linalg.det(cells.astype(np.float64)))[:, None, None]
        else:
            stress = np.zeros((len(structures), 3, 3))
        split = np.cumsum(natoms)[:-1]
        spreads = np.split(f_spread, split) if f_spread is not None else [None] * len(structures)
        atomic = np.split(atomic, split) if atomic is not None else [None] * len(structures)
        return e.mean(axis=0), e.std(axis=0), np.split(f_mean, split), spreads, stress, atomic


def _member_energies(model, stacked_variables, inputs):
    """Energies [K, B] of the K stacked members, one vmapped call."""
    return _member_energies_and_atomic(model, stacked_variables, inputs)[0]


def _member_energies_and_atomic(model, stacked_variables, inputs):
    """Energies [K, B] and atomic energies [K, N] of the K stacked members, one vmapped call."""
    import jax

    def member(variables):
        energy, output = model._total_energy(variables, inputs)
        return energy, output["atomic_energies"]

    return jax.vmap(member)(stacked_variables)


def _hessian_vector_product(model):
    """H v of the members' mean energy, exact: forward-mode derivative (jvp) of the gradient, at
    the fixed graph (and cell) of the prepared inputs."""
    import jax

    def product(stacked_variables, data, direction):
        def gradient(coordinates):
            energy = lambda x: _member_energies(model, stacked_variables, {**data, "coordinates": x}).mean(axis=0).sum()
            return jax.grad(energy)(coordinates)

        return jax.jvp(gradient, (data["coordinates"],), (direction,))[1]

    return product


def _mean_energy_forces_virial(model):
    """(member energies [K, B], forces [N, 3] and virial dE/dstrain [B, 3, 3] of the members' mean
    energy, the members' mean atomic energies [N]) from stacked weights: one backward pass for
    positions and strain together. The strain acts as FeNNol's own virial does: coordinates and
    cell rows times (1 + strain)."""
    import jax
    import jax.numpy as jnp

    def evaluate(stacked_variables, data):
        def mean_energy(coordinates, strain):
            inputs = {**data, "coordinates": jax.vmap(jnp.matmul)(coordinates, strain[data["batch_index"]])}
            if "cells" in data:
                cells = jax.vmap(jnp.matmul)(data["cells"], strain)
                inputs.update(cells=cells, reciprocal_cells=jnp.linalg.inv(cells))
            member_energies, atomic = _member_energies_and_atomic(model, stacked_variables, inputs)
            return member_energies.mean(axis=0).sum(), (member_energies, atomic.mean(axis=0))

        coordinates = data["coordinates"]
        strain = jnp.broadcast_to(jnp.eye(3, dtype=coordinates.dtype), (data["natoms"].shape[0], 3, 3))
        gradient = jax.value_and_grad(mean_energy, argnums=(0, 1), has_aux=True)
        (_, (member_energies, atomic)), (d_coordinates, virial) = gradient(coordinates, strain)
        return member_energies, -d_coordinates, virial, atomic

    return evaluate


def _supported_elements(modules: dict) -> tuple[str, ...]:
    """Elements a FeNNol model was trained on, read from its module settings."""
    found: set[str] = set()
    for params in modules.values():
        order = params.get("species_order")
        if order:
            found.update(order)
        for value in params.values():
            if isinstance(value, dict) and value and all(k in chemical_symbols for k in value):
                found.update(value)
    if not found:
        return tuple(chemical_symbols[1:])
    return tuple(sorted(found, key=chemical_symbols.index))
