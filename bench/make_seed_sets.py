"""Make the seed sets that ship inside the package (toolchain/data/assets/) from the MOSES file.

  .venv/bin/python bench/make_seed_sets.py --moses ../shared/molecules/moses-chno.smi.gz

drug-like.smi.gz: molecules of MOSES's train split, shuffled with a fixed seed, one per
Bemis-Murcko scaffold (scaffold-diverse), each checked to embed in 3D with RDKit.
fragments.smi.gz: BRICS fragments (capped with hydrogens, 2-14 heavy atoms) of a disjoint set of
MOSES train molecules, distinct, each checked to embed.
small.smi.gz: every small CHNO molecule up to SMALL_HEAVY heavy atoms (data.chemistry.small_molecules,
nitro derivatives included), each checked to embed, without the molecules of the G2/S22 set, their
scaffold families and their H -> CH3/NH2/OH mutants (the demo fine-tunes on those and holds out the
families the pretrained student never saw; none of its test molecules may sit in pretraining), and
without the BRICS fragments already in fragments.smi.gz. Ordered by heavy-atom count, shuffled within
a count, so `small:N` takes the smallest first.
All keep only neutral closed-shell CHNO molecules. The output is deterministic for a given input.
`--only small` rebuilds small.smi.gz alone (it does not read MOSES).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np
from rich.progress import track

from mlffc.data.chemistry import (FAMILY_SEPARATOR, brics_fragments, molecule_from_smiles, parse_smiles, rng_seed,
                                  scaffold_family, small_molecules)
from mlffc.data.seeds import bundled_smiles_path, read_smiles_lines, seed_molecules

ASSETS = Path(__file__).resolve().parents[1] / "toolchain" / "data" / "assets"
CHNO = {"H", "C", "N", "O"}
SMALL_HEAVY = 5  # 3,247 molecules enumerated up to 5 heavy atoms, nitro derivatives included
NITRO_PARENT_HEAVY = 3  # nitro derivatives of the molecules up to 3 heavy atoms


def read_moses(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]
    return [smiles for smiles, split in rows if split == "train"]


def write_smi(path: Path, rows: list[tuple[str, str]], header: str) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as handle:  # mtime 0: the same bytes on every run
        handle.write((header + "".join(f"{smiles}\t{name}\n" for smiles, name in rows)).encode())


def excluded_from_small() -> tuple[set[str], set[str]]:
    """(families, canonical SMILES) the small set leaves out: the G2/S22 molecules' families,
    and those molecules and every single H -> CH3/NH2/OH substitution of them (demo mutants)."""
    from rdkit import Chem

    families, smiles = set(), set()
    for _, atoms in seed_molecules():
        families.update(atoms.info["family"].split(FAMILY_SEPARATOR))
        for part in atoms.info["smiles"].split("."):
            molecule = Chem.AddHs(Chem.MolFromSmiles(part))
            smiles.add(Chem.MolToSmiles(Chem.RemoveHs(molecule)))
            for atom in molecule.GetAtoms():
                if atom.GetSymbol() != "H":
                    continue
                for heavy in ("C", "N", "O"):
                    mutant = Chem.RWMol(molecule)
                    mutant.GetAtomWithIdx(atom.GetIdx()).SetAtomicNum(Chem.GetPeriodicTable().GetAtomicNumber(heavy))
                    mutant.GetAtomWithIdx(atom.GetIdx()).SetNoImplicit(False)
                    try:
                        made = mutant.GetMol()
                        made.UpdatePropertyCache(strict=False)
                        made = Chem.AddHs(Chem.RemoveHs(made, sanitize=False))
                        Chem.SanitizeMol(made)
                    except Exception:  # RDKit cannot make this substitution: no such mutant
                        continue
                    smiles.add(Chem.MolToSmiles(Chem.RemoveHs(made)))
    return families, smiles


def small_set(seed: int) -> list[tuple[str, str]]:
    families, excluded = excluded_from_small()
    fragments = {smiles for _, smiles, _ in read_smiles_lines(bundled_smiles_path("fragments"))}
    rng = np.random.default_rng(seed)
    by_size: dict[int, list[str]] = {}
    for smiles in small_molecules(SMALL_HEAVY, NITRO_PARENT_HEAVY):
        molecule = parse_smiles(smiles)
        if smiles in excluded or smiles in fragments or scaffold_family(molecule) in families:
            continue
        by_size.setdefault(molecule.GetNumHeavyAtoms(), []).append(smiles)
    ordered = [smiles for size in sorted(by_size) for smiles in rng.permutation(by_size[size])]
    # kept: embeds with seed 0 (the first rule, which made the file the 2026-12-02 recipe run read)
    # and with the seed the loader will use (so `small` loads with no problems)
    named = [(smiles, f"small-{k}") for k, smiles in enumerate(ordered)]
    return [(smiles, name) for smiles, name in track(named, description="small molecules")
            if _embeds(smiles, 0) and _embeds(smiles, rng_seed(name, smiles))]


def _embeds(smiles: str, seed: int) -> bool:
    return not isinstance(molecule_from_smiles(smiles, CHNO, seed), str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moses", type=Path, default=Path("../shared/molecules/moses-chno.smi.gz"))
    parser.add_argument("--molecules", type=int, default=20000)
    parser.add_argument("--fragment-sources", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["small"], help="rebuild this set alone")
    args = parser.parse_args()

    small = small_set(args.seed)
    write_smi(ASSETS / "small.smi.gz", small,
              f"# {len(small)} small CHNO molecules up to {SMALL_HEAVY} heavy atoms (enumerated; nitro derivatives of up to "
              f"{NITRO_PARENT_HEAVY}), without G2/S22 molecules, their families and mutants, and without fragments.smi.gz\n")
    print(f"{len(small)} small molecules -> {ASSETS}")
    if args.only == "small":
        return

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
