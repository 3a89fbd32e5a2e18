"""A loaded artifact: the compiled graph behind `compute(structures)`, batched screening of many
structures (`screen`) and an ASE calculator for MD.

Imports nothing from teachers, data or trainers: a deployment needs torch (or the backend's
runtime), the manifest and the payload.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from mlffc.graph import BATCH_ATOMS, Graph, build_graph
from mlffc.runtime.backends import LOADERS
from mlffc.runtime.calculator import MlffcCalculator
from mlffc.runtime.manifest import Manifest, check_compatible, verify_payload
from mlffc.runtime.neighbours import DEFAULT_SKIN
from mlffc.structures import atom_batches, check_structures
from mlffc.errors import MlffcError

Runner = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# Atoms per compiled call of `compute` and `screen`, by device. On a CPU a call's working set must
# stay within a core's L2 cache: bench/bench_throughput.py measured 4096-atom calls ~1.7x slower per
# structure than 128-512-atom ones (docs/runtime.md, "Throughput and memory"); a GPU wants big calls.
CALL_ATOMS = {"cpu": 256, "cuda": BATCH_ATOMS}


class CompiledModel:
    """Energy (eV), forces (eV/Å) and stress (eV/Å³) from a compiled artifact."""

    def __init__(self, artifact: Path, manifest: Manifest, runner: Runner):
        self.path = artifact
        self.manifest = manifest
        self._runner = runner
        self.species = list(manifest.model.species)
        self.elements = [chemical_symbols[z] for z in self.species]
        self.cutoff = manifest.model.cutoff
        self.periodic = manifest.capabilities.periodic
        self.device = torch.device("cuda" if manifest.target.device == "cuda" else "cpu")

    def run(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The compiled graph on one batch: energy [B], forces [N, 3], stress [B, 3, 3]."""
        with torch.no_grad():
            return self._runner(*graph.to(self.device).inputs())

    def compute(self, structures: Atoms | Sequence[Atoms], max_atoms: int | None = None) -> dict[str, np.ndarray | list[np.ndarray]]:
        """Labels for one structure or a batch: energy [B]; forces, one [n_atoms, 3] array per
        structure; stress [B, 3, 3] (zero for non-periodic structures). Every structure is checked
        first; then one compiled call per group of up to `max_atoms` atoms (default CALL_ATOMS
        for the artifact's device; a larger structure goes alone), structures in order."""
        return self._compute(structures, max_atoms, "compute")[0]

    def _compute(self, structures: Atoms | Sequence[Atoms], max_atoms: int | None, caller: str) -> tuple[dict, int]:
        """`compute`'s labels and the number of compiled calls it made (`screen` reports it)."""
        structures = [structures] if isinstance(structures, Atoms) else list(structures)
        if not structures:
            raise MlffcError(f"{caller} needs at least one structure (an ase.Atoms or a list of them), got none")
        check_structures(structures, self.elements, allow_periodic=self.periodic)
        calls = atom_batches([len(a) for a in structures], CALL_ATOMS[self.device.type] if max_atoms is None else max_atoms)
        energy, forces, stress = [], [], []
        for call in calls:
            group = [structures[k] for k in call]
            e, f, s = self.run(build_graph(group, self.cutoff))
            energy.append(e.cpu().numpy())
            forces.extend(np.split(f.cpu().numpy(), np.cumsum([len(a) for a in group])[:-1]))
            stress.append(s.cpu().numpy())
        labels = {
            "energy": np.concatenate(energy).astype(np.float64),
            "forces": [f.astype(np.float64) for f in forces],
            "stress": np.concatenate(stress).astype(np.float64),
        }
        return labels, len(calls)

    def screen(self, structures: Iterable[Atoms], max_atoms: int | None = None) -> dict:
        """Labels for many structures (`compute`), plus `throughput`: structures/s and atoms/s
        over the whole call, checks and neighbour lists included, and the compiled calls made."""
        structures = list(structures)
        started = time.perf_counter()
        result, calls = self._compute(structures, max_atoms, "screen")
        seconds = time.perf_counter() - started
        atoms = sum(len(a) for a in structures)
        result["throughput"] = {
            "structures": len(structures),
            "atoms": atoms,
            "batches": calls,
            "seconds": seconds,
            "structures_per_s": len(structures) / seconds,
            "atoms_per_s": atoms / seconds,
        }
        return result

    def calculator(self, skin: float = DEFAULT_SKIN):
        """An ASE calculator that keeps a Verlet neighbour list with `skin` Å across MD steps."""
        return MlffcCalculator(self, skin=skin)


def load(path: str | Path, threads: int | None = None) -> CompiledModel:
    """Load an artifact after checking its payload hashes and that this host can run it.
    `threads` defaults to the count the artifact was built for."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise MlffcError(f"threads must be an integer >= 1 (or None: the artifact's count), got {threads!r}")
    artifact = Path(path)
    manifest = Manifest.read(artifact)
    verify_payload(artifact, manifest)
    check_compatible(manifest)
    backend = manifest.backend.name
    if backend not in LOADERS:
        raise MlffcError(f"{artifact}: backend '{backend}' has no loader in this mlffc; upgrade mlffc")
    if manifest.target.device == "cpu":
        torch.set_num_threads(threads or manifest.target.threads)
    try:
        runner = LOADERS[backend](artifact, manifest)
    except MlffcError:
        raise
    except Exception as exc:  # a payload its runtime cannot read (truncated, foreign), hashes notwithstanding
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MlffcError(f"{artifact}: its {backend} payload {manifest.backend.entry} cannot be loaded "
                         f"({type(exc).__name__}: {first[:300]}); recompile the artifact") from exc
    return CompiledModel(artifact, manifest, runner)
