"""Orb teachers (orb-models 0.5.5, PyTorch): every named pretrained model, with weights from a
checkpoint file or, for tests and benchmarks, seeded random weights in the same architecture.

Upstream loaders download their checkpoint at run time; nothing here does. torch and orb_models
are imported only when a teacher is built, so listing teachers stays light."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from mlffc.errors import MlffcError
from mlffc.io import sha256_file
from mlffc.structures import charge_and_spin, structure_batches
from mlffc.teachers.base import Capabilities, Labels, Teacher, TeacherInfo

CUTOFF = 6.0  # Å, SystemConfig.radius of every Orb model
ELEMENTS = tuple(chemical_symbols[1:118])  # the atom embedding is a one-hot over Z < 118
MAX_ATOMS_PER_CALL = 1024  # cost is ~linear in atoms; larger calls only cost memory
PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class OrbModel:
    """What `mlffc teachers` shows about a named Orb model without building it."""

    architecture: str  # v2 | v3-conservative | v3-direct
    trained_on: str
    max_neighbours: int  # 20: faster, but the energy jumps when the 20 nearest change; 120 ("inf"): smooth
    stress: bool = True
    molecular: bool = False  # OMol25: takes total charge and spin; no periodic cells in its training data


_OMAT = "OMat24 (PBE/PBE+U), materials"
_MPA = "MPtrj + Alexandria (PBE/PBE+U), materials"
_OMOL = "OMol25 (wB97M-V/def2-TZVPD), molecules"

# Every entry of orb_models.forcefield.pretrained.ORB_PRETRAINED_MODELS in 0.5.5 but DEPRECATED.
MODELS = {
    "orb-v3-conservative-omol": OrbModel("v3-conservative", _OMOL, 120, stress=False, molecular=True),
    "orb-v3-direct-omol": OrbModel("v3-direct", _OMOL, 120, stress=False, molecular=True),
    "orb-v3-conservative-20-omat": OrbModel("v3-conservative", _OMAT, 20),
    "orb-v3-conservative-inf-omat": OrbModel("v3-conservative", _OMAT, 120),
    "orb-v3-direct-20-omat": OrbModel("v3-direct", _OMAT, 20),
    "orb-v3-direct-inf-omat": OrbModel("v3-direct", _OMAT, 120),
    "orb-v3-conservative-20-mpa": OrbModel("v3-conservative", _MPA, 20),
    "orb-v3-conservative-inf-mpa": OrbModel("v3-conservative", _MPA, 120),
    "orb-v3-direct-20-mpa": OrbModel("v3-direct", _MPA, 20),
    "orb-v3-direct-inf-mpa": OrbModel("v3-direct", _MPA, 120),
    "separate-d3-3layer": OrbModel("v3-direct", "D3 dispersion correction alone (PBE, zero damping), 3 layers", 120),
    "separate-d3-5layer": OrbModel("v3-direct", "D3 dispersion correction alone (PBE, zero damping), 5 layers", 120),
    "separate-d4-3layer": OrbModel("v3-direct", "D4 dispersion correction alone (PBE), 3 layers", 120),
    "separate-d4-5layer": OrbModel("v3-direct", "D4 dispersion correction alone (PBE), 5 layers", 120),
    "orb-v2": OrbModel("v2", _MPA, 20),
    "orb-d3-v2": OrbModel("v2", _MPA + ", D3 dispersion included", 20),
    "orb-d3-sm-v2": OrbModel("v2", _MPA + ", D3 included; 10 layers", 20),
    "orb-d3-xs-v2": OrbModel("v2", _MPA + ", D3 included; 5 layers", 20),
    "orb-mptraj-only-v2": OrbModel("v2", "MPtrj (PBE/PBE+U), materials", 20),
}
DEPRECATED = ("orb-v1", "orb-d3-v1", "orb-d3-sm-v1", "orb-d3-xs-v1", "orb-v1-mptraj-only")  # upstream refuses them


def capabilities(model: OrbModel) -> Capabilities:
    return Capabilities(stress=model.stress, periodic=not model.molecular, charge_spin=model.molecular)


class OrbTeacher(Teacher):
    """A named Orb model on CPU, uncompiled, with exactly one of `weights` (the user's checkpoint
    file: a state dict saved by torch, or .safetensors) and `random_init` (a seed: untrained
    weights, recorded loudly in `info.source`). `precision` is float32 (as published) or float64.

    Conservative models give forces and stress as gradients of the energy; direct models predict
    them with heads. Models marked molecular read total charge and spin multiplicity from
    `atoms.info['charge']` and `['spin']` (defaults 0 and 1)."""

    def __init__(self, name: str, weights: str | Path | None = None, random_init: int | None = None,
                 precision: str = "float32"):
        if name not in MODELS:
            raise MlffcError(f"unknown Orb model '{name}'; available: {', '.join(MODELS)}")
        if precision not in PRECISIONS:
            raise MlffcError(f"teacher '{name}': precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        import torch
        from orb_models.forcefield import pretrained

        loader = pretrained.ORB_PRETRAINED_MODELS[name]
        if (weights is None) == (random_init is None):
            url = _checkpoint_url(loader)
            raise MlffcError(
                f"teacher '{name}' needs weights: pass weights=PATH (CLI --weights PATH) to its checkpoint, "
                f"downloaded where there is internet from {url}, or random_init=SEED (CLI --random-init SEED) "
                "for untrained weights (tests and benchmarks); not both"
            )
        self._dtype = getattr(torch, precision)
        with default_dtype(self._dtype):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0 if random_init is None else int(random_init))
                model = _architecture(pretrained, loader)
            if weights is not None:
                weights = Path(weights)
                _load_checkpoint(model, weights, name, _checkpoint_url(loader))
            self._model = model.to(self._dtype).eval().requires_grad_(False)
        spec = MODELS[name]
        self._conservative = spec.architecture == "v3-conservative"
        if random_init is not None:
            origin = {"weights": f"RANDOM-INIT (seed {random_init}): untrained, labels are not physics; "
                                 "for tests and benchmarks only", "random_init": int(random_init)}
        else:
            origin = {"weights": {"name": weights.name, "sha256": sha256_file(weights)}}
        self.info = TeacherInfo(
            name=name,
            family=f"orb-{spec.architecture}",
            elements=ELEMENTS,
            cutoff=CUTOFF,
            capabilities=capabilities(spec),
            source={
                **origin,
                "trained_on": spec.trained_on,
                "max_neighbours": model.system_config.max_num_neighbors,
                "precision": precision,
                "orb-models": version("orb-models"),
                "torch": torch.__version__,
            },
        )

    def _compute(self, structures: list[Atoms]) -> Labels:
        import torch
        from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs
        from orb_models.forcefield.base import batch_graphs

        plain = [self._plain(atoms, k) for k, atoms in enumerate(structures)]  # refuses bad charge/spin first
        model = self._model
        forces_key = model.grad_forces_name if self._conservative else "forces"
        stress_key = (model.grad_stress_name if self._conservative else "stress") if model.has_stress else None
        energy = np.empty(len(structures))
        forces: list[np.ndarray] = [np.empty(0)] * len(structures)
        stress = np.zeros((len(structures), 3, 3))
        with default_dtype(self._dtype), torch.set_grad_enabled(self._conservative):
            for chunk in structure_batches(structures, MAX_ATOMS_PER_CALL):
                graphs = [ase_atoms_to_atom_graphs(plain[k], model.system_config) for k in chunk]
                out = model.predict(batch_graphs(graphs))
                energy[chunk] = _numpy(out["energy"]).reshape(-1)
                split = np.cumsum([len(structures[k]) for k in chunk])[:-1]
                for k, f in zip(chunk, np.split(_numpy(out[forces_key]), split)):
                    forces[k] = f
                if stress_key and structures[chunk[0]].pbc.all():
                    stress[chunk] = voigt_6_to_full_3x3_stress(_numpy(out[stress_key]).reshape(len(chunk), 6))
        periodic = any(a.pbc.all() for a in structures)
        return Labels(
            natoms=np.array([len(a) for a in structures], dtype=np.int64),
            energy=energy,
            forces=np.concatenate(forces),
            stress=stress if periodic and stress_key else None,
        )

    def _plain(self, atoms: Atoms, index: int) -> Atoms:
        """Numbers, positions and cell only (constraints, tags and other info would change what
        the featuriser builds), plus validated charge and spin for a molecular model."""
        plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if self.info.capabilities.charge_spin:
            plain.info["charge"], plain.info["spin"] = charge_and_spin(atoms, index)
        return plain


@contextmanager
def default_dtype(dtype):
    """Orb reads torch's process-wide default dtype (featurisation, charge and spin, some buffers),
    and upstream's `precision=` sets it for good; here it holds only during Orb calls, so it
    cannot leak into a student trained in the same process."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _architecture(pretrained, loader):
    """The network, SystemConfig included, that an upstream loader builds, without weights.
    Loaders build the architecture, then hand it to `pretrained.load_model`, which downloads the
    checkpoint and sets process-wide precision; stand in for that one step."""
    from unittest import mock

    with mock.patch.object(pretrained, "load_model", lambda model, *args, **kwargs: model):
        return loader(device="cpu", compile=False)


def _load_checkpoint(model, path: Path, name: str, url: str) -> None:
    """Load a state dict strictly: every weight the labels depend on must be in the file (upstream
    tolerates missing heads, which would leave them random); extra heads in the file are ignored."""
    import torch
    from orb_models.forcefield.load import load_forcefield_state_dict

    if not path.is_file():
        raise MlffcError(f"teacher '{name}': checkpoint file not found: {path} (upstream publishes it at {url})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign, corrupt or pickled-object file
        raise MlffcError(f"teacher '{name}': {path} is not a readable checkpoint: {_brief(exc)}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MlffcError(f"teacher '{name}': {path} does not hold a state dict of tensors")
    try:
        result = load_forcefield_state_dict(model, state, strict=True)  # what model.load_state_dict does, with its result
    except RuntimeError as exc:
        raise MlffcError(
            f"teacher '{name}': {path} does not match the {name} architecture ({_brief(exc)}); "
            "is it another model's checkpoint?"
        ) from exc
    missing = [key for key in result.missing_keys if not key.startswith("heads.confidence.")]
    if missing:
        raise MlffcError(
            f"teacher '{name}': {path} lacks {len(missing)} weights of the {name} architecture "
            f"(e.g. {missing[0]}); is it another model's checkpoint?"
        )


def _checkpoint_url(loader) -> str:
    import inspect

    return inspect.signature(loader).parameters["weights_path"].default


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


def _brief(exc: Exception) -> str:
    """The first two lines of an error, which name the problem (torch's add a header line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] or type(exc).__name__
