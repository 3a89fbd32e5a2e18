"""A loaded artifact: the compiled graph behind `compute(structures)` and an ASE calculator.

Imports nothing from teachers, data or trainers: a deployment needs torch (or the backend's
runtime), the manifest and the payload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from mlffc.graph import Graph, build_graph
from mlffc.runtime.backends import LOADERS, prepare_aoti
from mlffc.runtime.manifest import check_compatible, read_manifest, verify_payload
from mlffc.structures import check_structures
from mlffc.errors import MlffcError

Runner = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _aoti_runner(artifact: Path, manifest: dict) -> Runner:
    prepare_aoti(artifact, manifest)
    runner = torch._inductor.aoti_load_package(str(artifact / manifest["backend"]["entry"]))
    return runner


_LOADERS: dict[str, Callable[[Path, dict], Runner]] = {"aoti": _aoti_runner, **LOADERS}


class CompiledModel:
    """Energy (eV), forces (eV/Å) and stress (eV/Å³) from a compiled artifact."""

    def __init__(self, artifact: Path, manifest: dict, runner: Runner):
        self.path = artifact
        self.manifest = manifest
        self._runner = runner
        self.species = [int(z) for z in manifest["model"]["species"]]
        self.elements = [chemical_symbols[z] for z in self.species]
        self.cutoff = float(manifest["model"]["cutoff"])
        self.periodic = bool(manifest["capabilities"]["periodic"])
        self.device = torch.device("cuda" if manifest["target"]["device"] == "cuda" else "cpu")

    def run(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The compiled graph on one batch: energy [B], forces [N, 3], stress [B, 3, 3]."""
        with torch.no_grad():
            return self._runner(*graph.to(self.device).inputs())

    def compute(self, structures: Atoms | Sequence[Atoms]) -> dict[str, np.ndarray | list[np.ndarray]]:
        """Labels for one structure or a batch: energy [B]; forces, one [n_atoms, 3] array per
        structure; stress [B, 3, 3] (zero for non-periodic structures)."""
        structures = [structures] if isinstance(structures, Atoms) else list(structures)
        check_structures(structures, self.elements, allow_periodic=self.periodic)
        energy, forces, stress = self.run(build_graph(structures, self.cutoff))
        split = np.cumsum([len(a) for a in structures])[:-1]
        return {
            "energy": energy.cpu().numpy().astype(np.float64),
            "forces": np.split(forces.cpu().numpy().astype(np.float64), split),
            "stress": stress.cpu().numpy().astype(np.float64),
        }

    def calculator(self):
        from mlffc.runtime.calculator import MlffcCalculator

        return MlffcCalculator(self)


def load(path: str | Path, threads: int | None = None) -> CompiledModel:
    """Load an artifact after checking its payload hashes and that this host can run it.
    `threads` defaults to the count the artifact was built for."""
    artifact = Path(path)
    manifest = read_manifest(artifact)
    verify_payload(artifact, manifest)
    check_compatible(manifest)
    backend = manifest["backend"]["name"]
    if backend not in _LOADERS:
        raise MlffcError(f"{artifact}: backend '{backend}' has no loader in this mlffc; upgrade mlffc")
    if manifest["target"]["device"] == "cpu":
        torch.set_num_threads(threads or manifest["target"]["threads"])
    return CompiledModel(artifact, manifest, _LOADERS[backend](artifact, manifest))
