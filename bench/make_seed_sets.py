"""Make the seed sets that ship inside the package (toolchain/data/assets/) from the MOSES file.

  .venv/bin/python bench/make_seed_sets.py --moses ../shared/molecules/moses-chno.smi.gz

drug-like.smi.gz: molecules of MOSES's train split, shuffled with a fixed seed, one per
Bemis-Murcko scaffold (scaffold-diverse), each checked to embed in 3D with RDKit.
fragments.smi.gz: BRICS fragments (capped with hydrogens, 2-14 heavy atoms) of a disjoint set of
MOSES train molecules, distinct, each checked to embed.
Both keep only neutral closed-shell CHNO molecules. The output is deterministic for a given input.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np
from rich.progress import track

from mlffc.data.chemistry import brics_fragments, molecule_from_smiles, parse_smiles, scaffold_family

ASSETS = Path(__file__).resolve().parents[1] / "toolchain" / "data" / "assets"
CHNO = {"H", "C", "N", "O"}


def read_moses(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]
    return [smiles for smiles, split in rows if split == "train"]


def write_smi(path: Path, rows: list[tuple[str, str]], header: str) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as handle:  # mtime 0: the same bytes on every run
        handle.write((header + "".join(f"{smiles}\t{name}\n" for smiles, name in rows)).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moses", type=Path, default=Path("../shared/molecules/moses-chno.smi.gz"))
    parser.add_argument("--molecules", type=int, default=20000)
    parser.add_argument("--fragment-sources", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train = read_moses(args.moses)
    order = np.random.default_rng(args.seed).permutation(len(train))
    chosen, scaffolds, used = [], set(), 0
    for position in track(order, description="scaffold-diverse molecules"):
        used += 1
        smiles = train[position]
        molecule = parse_smiles(smiles)
        if isinstance(molecule, str):
            continue
        scaffold = scaffold_family(molecule)
        if scaffold in scaffolds or isinstance(molecule_from_smiles(smiles, CHNO, 0), str):
            continue
        scaffolds.add(scaffold)
        chosen.append((smiles, f"moses-train-{position}"))
        if len(chosen) == args.molecules:
            break
    sources = [train[p] for p in order[used : used + args.fragment_sources]]
    fragments = [(f, f"brics-{k}") for k, f in enumerate(track(brics_fragments(sources), description="fragments"))
                 if not isinstance(molecule_from_smiles(f, CHNO, 0), str)]

    ASSETS.mkdir(parents=True, exist_ok=True)
    provenance = f"MOSES (Polykovskiy et al. 2020, MIT licence: LICENCE-MOSES), train split, shuffle seed {args.seed}"
    write_smi(ASSETS / "drug-like.smi.gz", chosen, f"# {len(chosen)} scaffold-diverse drug-like molecules; {provenance}\n")
    write_smi(ASSETS / "fragments.smi.gz", fragments,
              f"# {len(fragments)} BRICS fragments capped with H of {len(sources)} other molecules; {provenance}\n")
    shutil.copy(args.moses.parent / "LICENCE-MOSES", ASSETS / "LICENCE-MOSES")
    print(f"{len(chosen)} molecules ({used} read), {len(fragments)} fragments -> {ASSETS}")


if __name__ == "__main__":
    main()
