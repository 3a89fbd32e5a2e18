import numpy as np

from mlffc.data.storage import SPLITS, read_frames
from mlffc.data.seeds import first_groups, seed_crystals, seed_molecules


def test_seeds_are_closed_shell_chno():
    seeds = seed_molecules()
    names = [name for name, _ in seeds]
    assert len(names) == len(set(names))
    assert "g2/CH4" in names and "s22/Water_dimer" in names
    assert "g2/CH3" not in names  # a radical
    for _, atoms in seeds:
        assert set(atoms.get_chemical_symbols()) <= {"H", "C", "N", "O"}


def test_generated_data_is_labelled_and_split_by_molecule(small_data):
    frames = read_frames(small_data)
    assert frames.attrs["teacher"]["name"] == "ani1x"
    assert frames.attrs["units"]["forces"] == "eV/Angstrom"
    assert set(frames.sampler.tolist()) >= {"seed", "rattle0.02", "md500K"}
    groups_by_split = [set(frames.group[frames.split == k].tolist()) for k in range(len(SPLITS))]
    assert all(groups_by_split)
    assert not (groups_by_split[0] & groups_by_split[1]) and not (groups_by_split[0] & groups_by_split[2])
    assert np.isfinite(frames.forces).all() and (frames.energy_spread > 0).all()


def test_crystal_seeds_are_small_periodic_cells_grouped_by_material():
    seeds = seed_crystals()
    assert all(atoms.pbc.all() and 2 <= len(atoms) <= 32 for _, atoms in seeds)
    copper = [atoms for group, atoms in seeds if group == "bulk/Cu_fcc"]
    assert sorted(len(a) for a in copper) == [4, 8, 32]
    assert [g for g, _ in seed_crystals({"Cu", "Na", "Cl"})] == ["bulk/Cu_fcc"] * 3 + ["bulk/NaCl_rocksalt"] * 2
    assert [g for g, _ in first_groups(seeds, 2)] == ["bulk/Cu_fcc"] * 3 + ["bulk/Al_fcc"] * 3
