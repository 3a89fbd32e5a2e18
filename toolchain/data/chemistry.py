"""Molecules as chemists write them, with RDKit: 3D conformers from SMILES (ETKDG, then MMFF),
Bemis-Murcko scaffolds (the unit an honest split keeps apart), bond perception for structures
that come without bonds, and BRICS fragments capped with hydrogens (the small molecules that
drug-sized sets lack).

Every molecule leaves here as an ase.Atoms with `info["smiles"]` (canonical) and
`info["family"]` (the scaffold key splits group by), or as a `SeedProblem` that says why not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

ACYCLIC = "acyclic"  # family prefix of a molecule without rings: it has no scaffold, so it is its own family
FAMILY_SEPARATOR = "|"  # between the families of the members of a complex
SEEN_IN_TRAINING = "seen_in_training"  # seed info flag: its family trained the student this data will fine-tune
EMBED_ATTEMPTS = 3  # ETKDG random starts before a SMILES counts as unembeddable
MMFF_STEPS = 200  # the teacher relaxes the result: MMFF only needs to bring it near a minimum


@dataclass(frozen=True)
class SeedProblem:
    """Why one entry of a seed list cannot be used, and where it is."""

    where: str  # "file.smi:12" or "file.xyz#3"
    entry: str  # the SMILES or a formula
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.entry!r}: {self.reason}"


def _rdkit():
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # problems are reported as SeedProblems, not on stderr
    return Chem


def parse_smiles(smiles: str):
    """An RDKit molecule with explicit hydrogens, or a reason string."""
    Chem = _rdkit()
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return "unparsable SMILES"
    return Chem.AddHs(molecule)


def domain_problem(molecule, elements: set[str] | None, complexes: bool = False) -> str | None:
    """Why a teacher that knows `elements` and describes neutral closed-shell molecules (ANI)
    cannot label this molecule, or None. Several disconnected molecules in one entry are refused
    unless `complexes` (a structure file's dimer has its geometry; a SMILES' has none)."""
    symbols = {atom.GetSymbol() for atom in molecule.GetAtoms()}
    if elements is not None and not symbols <= elements:
        return f"element {', '.join(sorted(symbols - elements))} is not known to the teacher (it knows {', '.join(sorted(elements))})"
    charge = sum(atom.GetFormalCharge() for atom in molecule.GetAtoms())
    if charge != 0:
        return f"total charge {charge:+d}: the teacher describes neutral molecules only"
    radicals = sum(atom.GetNumRadicalElectrons() for atom in molecule.GetAtoms())
    if radicals:
        return f"{radicals} unpaired electron(s): the teacher describes closed-shell molecules only"
    if molecule.GetNumAtoms() < 2:
        return "a single atom has no forces to learn"
    if not complexes and len(_rdkit().GetMolFrags(molecule)) > 1:
        return "several disconnected molecules in one entry: give each its own line"
    return None


def scaffold_family(molecule) -> str:
    """The split family of a molecule: its Bemis-Murcko scaffold (canonical SMILES), or
    'acyclic:<canonical SMILES>' for a molecule without rings. A complex of several molecules
    belongs to each of its members' families: they are joined with FAMILY_SEPARATOR."""
    Chem = _rdkit()
    parts = Chem.GetMolFrags(molecule, asMols=True)
    if len(parts) > 1:
        return FAMILY_SEPARATOR.join(sorted({scaffold_family(part) for part in parts}))
    from rdkit.Chem.Scaffolds import MurckoScaffold

    flat = Chem.RemoveHs(molecule)
    Chem.RemoveStereochemistry(flat)  # a scaffold perceived from 3D carries stereo tags one from SMILES may not
    scaffold = Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(flat))
    return scaffold if scaffold else f"{ACYCLIC}:{Chem.MolToSmiles(flat)}"


def conformer(molecule, seed: int) -> Atoms | str:
    """A 3D structure of an RDKit molecule (with hydrogens): ETKDG v3 embedding, then MMFF94
    relaxation (UFF where MMFF has no parameters). A reason string when it cannot be embedded."""
    from rdkit.Chem import AllChem

    Chem = _rdkit()
    molecule = Chem.Mol(molecule)
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = int(seed) % 2**31
    for attempt in range(EMBED_ATTEMPTS):
        if AllChem.EmbedMolecule(molecule, parameters) == 0:
            break
        parameters.randomSeed = (parameters.randomSeed + 7919) % 2**31
    else:
        return "RDKit could not embed it in 3D (ETKDG)"
    if AllChem.MMFFHasAllMoleculeParams(molecule):
        AllChem.MMFFOptimizeMolecule(molecule, maxIters=MMFF_STEPS)
    else:
        AllChem.UFFOptimizeMolecule(molecule, maxIters=MMFF_STEPS)
    positions = molecule.GetConformer().GetPositions()
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in molecule.GetAtoms()], positions=positions)
    atoms.info["smiles"] = Chem.MolToSmiles(Chem.RemoveHs(molecule))
    atoms.info["family"] = scaffold_family(molecule)
    return atoms


def molecule_from_smiles(smiles: str, elements: set[str] | None, seed: int) -> Atoms | str:
    """Parse, check against the teacher's domain and embed one SMILES: Atoms or a reason."""
    molecule = parse_smiles(smiles)
    if isinstance(molecule, str):
        return molecule
    problem = domain_problem(molecule, elements)
    return problem if problem else conformer(molecule, seed)


def perceive(atoms: Atoms):
    """An RDKit molecule with bonds and bond orders perceived from 3D positions (neutral), or a
    reason string when perception fails (an unusual geometry or an open-shell species)."""
    from rdkit.Chem import rdDetermineBonds

    Chem = _rdkit()
    block = f"{len(atoms)}\n\n" + "\n".join(f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in
                                           zip(atoms.get_chemical_symbols(), atoms.positions))
    molecule = Chem.MolFromXYZBlock(block)
    if molecule is None:
        return "RDKit could not read the structure"
    try:
        rdDetermineBonds.DetermineBonds(molecule, charge=0)
        Chem.SanitizeMol(molecule)
    except Exception as error:  # RDKit raises ValueError or its own sanitisation errors
        return f"bonds could not be perceived as a neutral closed-shell molecule ({str(error).strip() or type(error).__name__})"
    return molecule


def describe(atoms: Atoms, elements: set[str] | None) -> Atoms | str:
    """A structure from a file, checked and labelled like a SMILES seed (canonical SMILES and
    scaffold family from perceived bonds), or a reason. Periodic structures pass unperceived
    (family: their formula), as do molecules RDKit cannot perceive (family: 'unperceived:<formula>')."""
    symbols = set(atoms.get_chemical_symbols())
    if elements is not None and not symbols <= elements:
        return f"element {', '.join(sorted(symbols - elements))} is not known to the teacher (it knows {', '.join(sorted(elements))})"
    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    clean.info.update({k: v for k, v in atoms.info.items() if k in ("charge", "spin", "name")})
    if atoms.pbc.any():
        clean.info["family"] = f"periodic:{atoms.get_chemical_formula()}"
        return clean
    molecule = perceive(atoms)
    if isinstance(molecule, str):
        if len(atoms) < 2:
            return "a single atom has no forces to learn"
        clean.info["family"] = f"unperceived:{atoms.get_chemical_formula()}"
        return clean
    problem = domain_problem(molecule, elements, complexes=True)
    if problem:
        return problem
    Chem = _rdkit()
    clean.info["smiles"] = Chem.MolToSmiles(Chem.RemoveHs(molecule))
    clean.info["family"] = scaffold_family(molecule)
    return clean


def brics_fragments(smiles: list[str], min_heavy: int = 2, max_heavy: int = 14) -> list[str]:
    """Distinct BRICS fragments of `smiles`, each dummy attachment point capped with a hydrogen,
    with min_heavy..max_heavy heavy atoms, as canonical SMILES in order of first appearance:
    the functional groups and ring systems of drug-like molecules as small molecules."""
    from rdkit.Chem import BRICS

    Chem = _rdkit()
    found: dict[str, None] = {}
    for text in smiles:
        molecule = Chem.MolFromSmiles(text)
        if molecule is None:
            continue
        for piece in sorted(BRICS.BRICSDecompose(molecule)):
            fragment = Chem.RWMol(Chem.MolFromSmiles(piece, sanitize=False))
            for atom in fragment.GetAtoms():
                if atom.GetAtomicNum() == 0:  # an attachment point: becomes a hydrogen
                    atom.SetAtomicNum(1)
                    atom.SetIsotope(0)
            try:
                Chem.SanitizeMol(fragment)
                capped = Chem.RemoveHs(fragment)
            except Exception:  # RDKit cannot sanitise this capping: skip the piece
                continue
            if min_heavy <= capped.GetNumHeavyAtoms() <= max_heavy:
                found.setdefault(Chem.MolToSmiles(capped), None)
    return list(found)


VALENCES = {"C": 4, "N": 3, "O": 2}  # neutral closed-shell valences of the enumerated heavy atoms


def small_molecules(max_heavy: int, nitro_parents_heavy: int = 0) -> list[str]:
    """Every neutral closed-shell molecule of C, N, O (hydrogens filling the valences) with
    1..max_heavy heavy atoms, in the spirit of the GDB enumerations: chains, branches, rings and
    single, double and triple bonds, as canonical SMILES ordered by heavy-atom count then SMILES.
    Left out as unstable or outside an organic teacher's data: O-O bonds, triple bonds in rings,
    ring atoms with two double bonds (cumulated bonds in a ring) and aromatic three- and
    four-membered rings. Molecules of up to `nitro_parents_heavy` heavy atoms also appear with
    one hydrogen on C or N replaced by a nitro group (charge-separated, neutral overall: neutral
    valences alone cannot make it)."""
    Chem = _rdkit()
    sizes: list[set[str]] = [_closed_under_bonds({symbol for symbol in VALENCES}, Chem)]
    for _ in range(max_heavy - 1):
        sizes.append(_closed_under_bonds(_with_one_more_atom(sizes[-1], Chem), Chem))
    found = [smiles for level in sizes for smiles in sorted(level)]
    nitro = {_nitro(smiles, hydrogen, Chem) for level in sizes[:nitro_parents_heavy] for smiles in level
             for hydrogen in range(Chem.AddHs(Chem.MolFromSmiles(smiles)).GetNumAtoms())}
    nitro.discard(None)
    return found + sorted(nitro - set(found), key=lambda s: (Chem.MolFromSmiles(s).GetNumHeavyAtoms(), s))


_BOND_ORDERS = {1: "SINGLE", 2: "DOUBLE", 3: "TRIPLE"}


def _free_valence(molecule, index: int) -> int:
    atom = molecule.GetAtomWithIdx(index)
    return VALENCES[atom.GetSymbol()] - int(sum(bond.GetBondTypeAsDouble() for bond in atom.GetBonds()))


def _kept(molecule, Chem) -> str | None:
    """Canonical SMILES of an edited heavy-atom graph, or None when it is not a molecule the
    enumeration keeps (see small_molecules)."""
    try:
        made = molecule.GetMol()
        Chem.SanitizeMol(made)
    except Exception:  # RDKit refuses the valences or aromaticity of this edit: not a molecule
        return None
    for bond in made.GetBonds():
        if bond.GetBeginAtom().GetSymbol() == bond.GetEndAtom().GetSymbol() == "O":
            return None
        if bond.IsInRing() and bond.GetBondType() == Chem.BondType.TRIPLE:
            return None
    for atom in made.GetAtoms():
        if atom.IsInRing() and sum(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds()) > 1:
            return None
        if atom.GetIsAromatic() and (atom.IsInRingSize(3) or atom.IsInRingSize(4)):
            return None
    return Chem.MolToSmiles(made)


def _with_one_more_atom(level: set[str], Chem) -> set[str]:
    grown = set()
    for smiles in level:
        molecule = Chem.MolFromSmiles(smiles)
        Chem.Kekulize(molecule, clearAromaticFlags=True)
        for index in range(molecule.GetNumAtoms()):
            for symbol, valence in VALENCES.items():
                for order in range(1, min(3, valence, _free_valence(molecule, index)) + 1):
                    edited = Chem.RWMol(molecule)
                    added = edited.AddAtom(Chem.Atom(symbol))
                    edited.AddBond(index, added, getattr(Chem.BondType, _BOND_ORDERS[order]))
                    kept = _kept(edited, Chem)
                    if kept:
                        grown.add(kept)
    return grown


def _closed_under_bonds(level: set[str], Chem) -> set[str]:
    """`level` with every molecule reachable by adding ring bonds or raising bond orders."""
    done, todo = set(level), list(level)
    while todo:
        molecule = Chem.MolFromSmiles(todo.pop())
        Chem.Kekulize(molecule, clearAromaticFlags=True)
        count = molecule.GetNumAtoms()
        for i in range(count):
            for j in range(i + 1, count):
                if _free_valence(molecule, i) < 1 or _free_valence(molecule, j) < 1:
                    continue
                bond = molecule.GetBondBetweenAtoms(i, j)
                if bond is not None and bond.GetBondTypeAsDouble() >= 3:
                    continue
                edited = Chem.RWMol(molecule)
                if bond is None:
                    edited.AddBond(i, j, Chem.BondType.SINGLE)
                else:
                    edited.GetBondBetweenAtoms(i, j).SetBondType(
                        getattr(Chem.BondType, _BOND_ORDERS[int(bond.GetBondTypeAsDouble()) + 1]))
                kept = _kept(edited, Chem)
                if kept and kept not in done:
                    done.add(kept)
                    todo.append(kept)
    return done


def _nitro(smiles: str, hydrogen: int, Chem) -> str | None:
    """`smiles` with its hydrogen number `hydrogen` (explicit-H order) replaced by a nitro
    group, if that hydrogen sits on C or N."""
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    atom = molecule.GetAtomWithIdx(hydrogen)
    if atom.GetSymbol() != "H" or atom.GetNeighbors()[0].GetSymbol() not in ("C", "N"):
        return None
    edited = Chem.RWMol(molecule)
    parent = atom.GetNeighbors()[0].GetIdx()
    edited.RemoveBond(parent, hydrogen)
    nitrogen = edited.AddAtom(Chem.Atom("N"))
    edited.GetAtomWithIdx(nitrogen).SetFormalCharge(1)
    double = edited.AddAtom(Chem.Atom("O"))
    single = edited.AddAtom(Chem.Atom("O"))
    edited.GetAtomWithIdx(single).SetFormalCharge(-1)
    edited.AddBond(parent, nitrogen, Chem.BondType.SINGLE)
    edited.AddBond(nitrogen, double, Chem.BondType.DOUBLE)
    edited.AddBond(nitrogen, single, Chem.BondType.SINGLE)
    edited.RemoveAtom(hydrogen)
    try:
        made = edited.GetMol()
        Chem.SanitizeMol(made)
    except Exception:  # RDKit refuses this substitution: not a molecule
        return None
    return Chem.MolToSmiles(Chem.RemoveHs(made))


def canonical(smiles: str) -> str | None:
    molecule = _rdkit().MolFromSmiles(smiles)
    return None if molecule is None else _rdkit().MolToSmiles(molecule)


def rng_seed(*parts) -> int:
    """A stable 31-bit seed from strings and integers (RDKit takes ints)."""
    import zlib

    return int(np.uint32(zlib.crc32("/".join(map(str, parts)).encode())) % 2**31)
