"""FeNNol teachers (JAX): one network or an ensemble of same-architecture networks evaluated
together (weights stacked, one vmapped call, one shared graph), in float64 by default."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlffc.errors import MlffcError
from mlffc.teachers.base import Capabilities, Labels, Teacher, TeacherInfo
from mlffc.units import HARTREE_TO_EV

MAX_ATOMS_PER_CALL = 4096


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FennolTeacher(Teacher):
    """Mean (and spread) of one or more FeNNol `.fnx` networks sharing one architecture.

    The members' energies come from one vmapped call, and forces from one gradient of their mean,
    so work that does not depend on the weights (the graph, ANI's AEV and its backward) runs
    once: the 8-network ANI-1x costs ~1.5 networks. Per-member forces (`force_spread=True`) need
    one backward per member and cost ~4x more."""

    def __init__(self, paths: Sequence[str | Path], name: str, float64: bool = True, force_spread: bool = False):
        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.is_file()]
        if not paths or missing:
            raise MlffcError(f"teacher '{name}': model file not found: {', '.join(missing) or '(no files given)'}")
        import jax

        if float64:
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
        self._model = reference
        self._dtype = np.float64 if float64 else np.float32
        self._to_ev = HARTREE_TO_EV / reference.Ha_to_model_energy
        self._variables = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[m.variables for m in models])
        self._force_spread = force_spread
        if force_spread:
            self._energy_forces = jax.jit(jax.vmap(lambda v, x: reference._energy_and_forces(v, x)[:2], in_axes=(0, None)))
        else:
            self._energy_forces = jax.jit(_mean_energy_and_forces(reference))
        self._energy_forces_virial = jax.jit(
            jax.vmap(lambda v, x: reference._energy_and_forces_and_virial(v, x)[:3], in_axes=(0, None))
        )
        import fennol

        self.info = TeacherInfo(
            name=name,
            family="fennol",
            elements=_supported_elements(reference._input_args["modules"]),
            cutoff=float(reference.cutoff),
            capabilities=Capabilities(stress=True, periodic=True, uncertainty=len(models) > 1),
            source={
                "files": [{"name": p.name, "sha256": file_sha256(p)} for p in paths],
                "members": len(models),
                "precision": "float64" if float64 else "float32",
                "fennol": fennol.__version__ if hasattr(fennol, "__version__") else _dist_version("fennol"),
                "jax": jax.__version__,
            },
        )

    def _compute(self, structures: list[Atoms]) -> Labels:
        energy = np.empty(len(structures))
        energy_spread = np.empty(len(structures))
        forces = [None] * len(structures)
        forces_spread = [None] * len(structures)
        stress = np.zeros((len(structures), 3, 3))
        for chunk in _chunks(structures, MAX_ATOMS_PER_CALL):
            e, de, f, df, s = self._compute_chunk([structures[k] for k in chunk])
            energy[chunk], energy_spread[chunk], stress[chunk] = e, de, s
            for k, fk, dfk in zip(chunk, f, df):
                forces[k], forces_spread[k] = fk, dfk
        periodic = any(a.pbc.all() for a in structures)
        return Labels(
            natoms=np.array([len(a) for a in structures], dtype=np.int64),
            energy=energy,
            forces=np.concatenate(forces),
            stress=stress if periodic else None,
            energy_spread=energy_spread if self.info.capabilities.uncertainty else None,
            forces_spread=np.concatenate(forces_spread) if self.info.capabilities.uncertainty and self._force_spread else None,
        )

    def _compute_chunk(self, structures: list[Atoms]):
        natoms = np.array([len(a) for a in structures], dtype=np.int32)
        inputs = {
            "species": np.concatenate([a.numbers for a in structures]).astype(np.int32),
            "coordinates": np.concatenate([a.positions for a in structures]).astype(self._dtype),
            "natoms": natoms,
            "batch_index": np.repeat(np.arange(len(structures), dtype=np.int32), natoms),
        }
        periodic = [bool(a.pbc.all()) for a in structures]
        if any(periodic):
            if not all(periodic):
                raise MlffcError("a FeNNol batch must be all periodic or all non-periodic")
            cells = np.stack([a.cell.array for a in structures]).astype(self._dtype)
            inputs["cells"] = cells
            inputs["reciprocal_cells"] = np.linalg.inv(cells)
        prepared = self._model.preprocess(**inputs)
        true_atoms = np.asarray(prepared["true_atoms"])
        true_sys = np.asarray(prepared["true_sys"])
        if any(periodic):
            e, f, virial = self._energy_forces_virial(self._variables, prepared)
            volumes = np.abs(np.linalg.det(cells))
            stress = np.asarray(virial, dtype=np.float64)[:, true_sys].mean(axis=0) * self._to_ev / volumes[:, None, None]
        else:
            e, f = self._energy_forces(self._variables, prepared)
            stress = np.zeros((len(structures), 3, 3))
        e = np.asarray(e, dtype=np.float64)[:, true_sys] * self._to_ev
        f = np.asarray(f, dtype=np.float64)[..., true_atoms, :] * self._to_ev
        if f.ndim == 3:  # per-member forces
            f_mean = f.mean(axis=0)
            f_spread = np.sqrt(((f - f_mean) ** 2).sum(axis=-1).mean(axis=0))
        else:
            f_mean, f_spread = f, None
        split = np.cumsum(natoms)[:-1]
        spreads = np.split(f_spread, split) if f_spread is not None else [None] * len(structures)
        return e.mean(axis=0), e.std(axis=0), np.split(f_mean, split), spreads, stress


def _mean_energy_and_forces(model):
    """(member energies [K, B], forces of the mean energy [N, 3]) from stacked weights."""
    import jax

    def energy_and_forces(stacked_variables, data):
        def mean_energy(coordinates):
            inputs = {**data, "coordinates": coordinates}
            member_energies = jax.vmap(lambda v: model._total_energy(v, inputs)[0])(stacked_variables)
            return member_energies.mean(axis=0).sum(), member_energies

        (_, member_energies), gradient = jax.value_and_grad(mean_energy, has_aux=True)(data["coordinates"])
        return member_energies, -gradient

    return energy_and_forces


def _chunks(structures: list[Atoms], max_atoms: int) -> list[list[int]]:
    """Index groups of at most max_atoms atoms (a larger structure goes alone), periodic kept apart."""
    groups: list[list[int]] = []
    for periodic in (False, True):
        current, size = [], 0
        for k, atoms in enumerate(structures):
            if bool(atoms.pbc.all()) != periodic:
                continue
            if current and size + len(atoms) > max_atoms:
                groups.append(current)
                current, size = [], 0
            current.append(k)
            size += len(atoms)
        if current:
            groups.append(current)
    return groups


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


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)
