"""Seeds from a user's chemistry: SMILES files and structure files, their bad lines, the bundled
drug-like and fragment sets, and scaffold families that keep held-out molecules unseen."""

import gzip

import ase.io
import numpy as np
import pytest
from ase.build import molecule

from mlffc.data.chemistry import (brics_fragments, canonical, domain_problem, molecule_from_smiles, parse_smiles, scaffold_family,
                                  small_molecules)
from mlffc.data.generate import split_codes, split_units
from mlffc.data.seeds import bundled_smiles_path, load_seeds, read_smiles_lines, seed_molecules
from mlffc.errors import MlffcError

CHNO = {"H", "C", "N", "O"}


def test_smiles_becomes_a_relaxed_3d_molecule_with_its_scaffold():
    atoms = molecule_from_smiles("Oc1ccccc1", CHNO, seed=0)
    assert len(atoms) == 13 and atoms.get_chemical_formula() == "C6H6O"
    assert atoms.info["family"] == "c1ccccc1" and atoms.info["smiles"] == "Oc1ccccc1"
    distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    assert 0.9 < distances.min() < 1.2  # an O-H or C-H bond: a real geometry, not a line of atoms
    assert molecule_from_smiles("CCO", CHNO, 0).info["family"] == "acyclic:CCO"


@pytest.mark.parametrize("smiles, reason", [
    ("C1CC", "unparsable"), ("CCCl", "element Cl"), ("C[N+](C)(C)C", "total charge +1"),
    ("[CH3]", "unpaired"), ("CCO.O", "disconnected"), ("[H+]", "total charge"), ("O", None),
])
def test_smiles_outside_the_teachers_domain_say_why(smiles, reason):
    result = molecule_from_smiles(smiles, CHNO, 0)
    if reason is None:
        assert len(result) == 3  # water: inside the domain
    else:
        assert reason in result


def test_smiles_file_bad_lines_are_named_and_skipped_or_refused(tmp_path):
    path = tmp_path / "mine.smi"
    path.write_text("# my molecules\nCCO ethanol\n\nC1CC broken\nCCCl chloro\nOCC ethanol-again\nc1ccncc1\n")
    assert [(n, s) for n, s, _ in read_smiles_lines(path)] == [(2, "CCO"), (4, "C1CC"), (5, "CCCl"), (6, "OCC"), (7, "c1ccncc1")]
    seeds, problems = load_seeds(str(path), CHNO, "skip")
    assert [g for g, _ in seeds] == ["mine/ethanol", "mine/7"]
    assert [p.where for p in problems] == ["mine.smi:4", "mine.smi:5", "mine.smi:6"]
    assert "unparsable" in problems[0].reason and "Cl" in problems[1].reason and "line 2" in problems[2].reason
    with pytest.raises(MlffcError, match=r"(?s)3 seed entries cannot be used.*mine\.smi:4"):
        load_seeds(str(path), CHNO, "refuse")


def test_structure_file_seeds_get_families_from_perceived_bonds(tmp_path):
    path = tmp_path / "mine.extxyz"
    benzene = molecule("C6H6")
    benzene.info["name"] = "benzene"
    dimer = molecule("H2O") + molecule("H2O")
    dimer.positions[3:] += [2.9, 0, 0]
    hcl = molecule("HCl")
    ase.io.write(path, [benzene, dimer, hcl], format="extxyz")
    seeds, problems = load_seeds(str(path), CHNO, "skip")
    assert [g for g, _ in seeds] == ["mine/benzene", "mine/1"]
    assert seeds[0][1].info["family"] == "c1ccccc1" and seeds[1][1].info["family"] == "acyclic:O"
    assert problems[0].where == "mine.extxyz#2" and "Cl" in problems[0].reason
    with pytest.raises(MlffcError, match="neither a bundled set"):
        load_seeds("no-such-file.xyz", CHNO)
    with pytest.raises(MlffcError, match="positive integer"):
        load_seeds("drug-like:0", CHNO)


def test_bundled_sets_are_scaffold_diverse_and_load_in_order():
    drugs, problems = load_seeds("drug-like:6", CHNO, "refuse")
    assert len(drugs) == 6 and not problems and all(g.startswith("drug-like/") for g, _ in drugs)
    families = [atoms.info["family"] for _, atoms in drugs]
    assert len(set(families)) == 6  # one molecule per scaffold
    assert all(15 <= sum(atoms.numbers > 1) <= 30 for _, atoms in drugs)
    pieces, _ = load_seeds("fragments:5", CHNO, "refuse")
    assert all(2 <= sum(atoms.numbers > 1) <= 14 for _, atoms in pieces)


def test_brics_fragments_are_capped_molecules():
    found = brics_fragments(["O=C(Nc1ccccc1)C1CCN(C(=O)c2ccco2)CC1"])
    assert {"c1ccccc1", "c1ccoc1", "C1CCNCC1"} <= set(found)
    assert all("*" not in f and not isinstance(molecule_from_smiles(f, CHNO, 0), str) for f in found)


def test_small_molecules_enumerate_every_valence_graph():
    found = small_molecules(3, nitro_parents_heavy=1)
    heavy = [parse_smiles(s).GetNumHeavyAtoms() for s in found if "+" not in s]
    # C, N, O; then CC C=C C#C CN C=N C#N CO C=O NN N=N N#N NO N=O (O-O left out)
    assert heavy.count(1) == 3 and heavy.count(2) == 13
    assert heavy == sorted(heavy) and len(set(found)) == len(found)
    assert {"C=C=O", "C#CC", "C1CC1", "C1CO1", "N#CO", "NC=O", "C[N+](=O)[O-]", "N[N+](=O)[O-]"} <= set(found)
    assert not {"OO", "C1#CC1", "C1=C=C1"} & set(found)  # peroxides, ring triple bonds, ring cumulenes
    assert all(domain_problem(parse_smiles(s), CHNO) in (None, "a single atom has no forces to learn") for s in found)


def test_bundled_small_set_holds_no_demo_molecule_family_or_mutant():
    entries = read_smiles_lines(bundled_smiles_path("small"))
    molecules = [parse_smiles(smiles) for _, smiles, _ in entries]
    assert len(entries) > 2000
    sizes = [molecule.GetNumHeavyAtoms() for molecule in molecules]
    assert sizes == sorted(sizes) and max(sizes) <= 6  # smallest first, so small:N takes the smallest
    demo_families = {f for _, atoms in seed_molecules() for f in atoms.info["family"].split("|")}
    assert not demo_families & {scaffold_family(molecule) for molecule in molecules}
    smiles = {canonical(smiles) for _, smiles, _ in entries}
    # G2 molecules and mutants of them (2-butyne+CH3, nitromethane+CH3, ketene+OH)
    assert not {canonical(s) for s in ["CC#CCC", "CC[N+](=O)[O-]", "OC=C=O", "C=C=O", "C=CC=C", "C=C=C"]} & smiles
    assert {canonical(s) for s in ["CC#CC#N", "C=C=C=C=O", "O=C1CC1", "CC(C)[N+](=O)[O-]"]} <= smiles  # relatives kept
    first, problems = load_seeds("small:40", CHNO, "refuse")
    assert len(first) == 40 and not problems and {a.info["smiles"] for _, a in first} <= smiles


def test_no_held_out_unit_shares_a_scaffold_with_training():
    seeds = seed_molecules()
    seeds += [(f"mine/{k}", molecule_from_smiles(s, CHNO, k)) for k, s in
              enumerate(["Cc1ccccc1", "c1ccc2[nH]ccc2c1", "OC1CCCCC1", "CC(=O)Nc1ccccc1", "Cc1ccncc1"])]
    units = split_units(seeds)
    by_family = {}
    for group, atoms in seeds:
        for family in atoms.info["family"].split("|"):
            by_family.setdefault(family, set()).add(units[group])
    assert all(len(u) == 1 for u in by_family.values())  # every scaffold lives in exactly one unit
    codes = split_codes(seeds, (0.1, 0.1), seed=0)
    for family, (unit,) in by_family.items():
        splits = {codes[g] for g in units if units[g] == unit}
        assert len(splits) == 1
    benzene_unit = units["g2/C6H6"]
    assert units["mine/0"] == benzene_unit and units["s22/Benzene-water_complex"] == benzene_unit
    assert codes["g2/C6H6"] == 0  # the hub of many complexes stays in training
    assert sum(c == 2 for c in codes.values()) >= 1 and sum(c == 1 for c in codes.values()) >= 1


def test_scaffold_ignores_stereo_and_hydrogens():
    a = scaffold_family(parse_smiles("C[C@H]1CC[C@@H](O)CC1"))
    b = scaffold_family(parse_smiles("CC1CCC(O)CC1"))
    assert a == b == "C1CCCCC1"


def test_gzipped_smiles_files_are_read(tmp_path):
    path = tmp_path / "set.smi.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("CCO a\nCCN b\nCCC a\n")
    seeds, _ = load_seeds(str(path), CHNO)
    assert [g for g, _ in seeds] == ["set/a", "set/b", "set/a@3"]
