"""`mlffc data import` / `export`: extxyz and ASE db in, the mlffc-dataset format out, and back."""

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from mlffc.data.exchange import export_extxyz, import_frames
from mlffc.data.storage import read_frames, write_frames
from mlffc.data.validate import validate
from mlffc.errors import MlffcError

from test_cli import mlffc


def labelled(count=6, seed=0, stress=False):
    rng = np.random.default_rng(seed)
    images = []
    for k in range(count):
        atoms = molecule("CH3OH")
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        results = {"energy": -100.0 + rng.normal(0, 0.1), "forces": rng.normal(0, 1.0, (len(atoms), 3))}
        if stress:
            atoms.cell, atoms.pbc = np.eye(3) * 8.0, True
            results["stress"] = rng.normal(0, 0.01, 6)
        atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    return images


def test_round_trip_extxyz_is_exact(tmp_path):
    images = labelled(stress=True)
    write(tmp_path / "in.extxyz", images)
    images = read(tmp_path / "in.extxyz", ":")  # extxyz keeps 8 decimals: the file is the reference
    frames = import_frames([tmp_path / "in.extxyz"], "DFT (ORCA wB97X/6-31G*)")
    np.testing.assert_allclose(frames.energy, [a.get_potential_energy() for a in images], rtol=0, atol=1e-12)
    np.testing.assert_allclose(frames.forces, np.concatenate([a.get_forces() for a in images]), rtol=0, atol=1e-12)
    write_frames(tmp_path / "a.h5", frames)
    first = read_frames(tmp_path / "a.h5")
    assert first.attrs["label_source"] == "DFT (ORCA wB97X/6-31G*)" and first.attrs["units"]["forces"] == "eV/Angstrom"
    export_extxyz(first, tmp_path / "out.extxyz")
    second = import_frames([tmp_path / "out.extxyz"], "DFT (ORCA wB97X/6-31G*)")
    for name in ("natoms", "numbers", "positions", "cell", "pbc", "energy", "forces", "stress"):
        np.testing.assert_allclose(getattr(second, name), getattr(first, name), rtol=1e-12, atol=1e-12, err_msg=name)


def test_ase_db_and_named_keys(tmp_path):
    images = labelled(count=3)
    write(tmp_path / "in.db", images)
    assert len(import_frames([tmp_path / "in.db"], "model X")) == 3
    plain = []
    for atoms in images:
        copy = atoms.copy()
        copy.info["dft_energy"] = atoms.get_potential_energy()
        copy.arrays["dft_forces"] = atoms.get_forces()
        plain.append(copy)
    write(tmp_path / "plain.extxyz", plain)
    frames = import_frames([tmp_path / "plain.extxyz"], "DFT", energy_key="dft_energy", forces_key="dft_forces")
    np.testing.assert_allclose(frames.energy, [a.get_potential_energy() for a in images])


@pytest.mark.parametrize("case, message", [
    ("missing", "file not found"),
    ("unreadable", "cannot read it with ase.io.read"),
    ("no_forces", "frame 1: the frame carries no forces"),
    ("wrong_key", "frame 0: no 'E_dft' info key"),
    ("nan", "frame 0: energy holds NaN"),
    ("element", "element(s) O not known"),
])
def test_bad_input_names_the_problem(tmp_path, case, message):
    path = tmp_path / "in.extxyz"
    images = labelled(count=2)
    keys, elements = {}, None
    if case == "unreadable":
        path.write_text("this is no structure file\n")
    elif case != "missing":
        if case == "no_forces":
            images[1].calc = SinglePointCalculator(images[1], energy=-1.0)
        if case == "nan":
            images[0].calc.results["energy"] = float("nan")
        if case == "wrong_key":
            keys = {"energy_key": "E_dft"}
        if case == "element":
            elements = {"C", "H"}
        write(path, images)
    with pytest.raises(MlffcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_frames([path], "DFT", elements=elements, **keys)


def test_imported_data_validates(tmp_path):
    write(tmp_path / "in.extxyz", labelled(count=12))
    assert not validate(import_frames([tmp_path / "in.extxyz"], "DFT")).errors


def test_cli_import_refuses_what_validation_rejects(tmp_path):
    images = labelled(count=10)
    for atoms in images:
        atoms.positions *= 100.0  # positions in the wrong units (nm as if pm)
    write(tmp_path / "far.extxyz", images)
    refused = mlffc("data", "import", tmp_path / "far.extxyz", "--out", tmp_path / "d.h5", "--label-source", "DFT")
    assert refused.returncode == 2 and "units of positions" in refused.stderr and "--accept-invalid-data" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "d.h5").exists()
    accepted = mlffc("data", "import", tmp_path / "far.extxyz", "--out", tmp_path / "d.h5", "--label-source", "DFT",
                     "--accept-invalid-data")
    assert accepted.returncode == 0, accepted.stderr
    assert len(read_frames(tmp_path / "d.h5")) == 10


def test_cli_import_export(tmp_path):
    write(tmp_path / "in.extxyz", labelled(count=10))
    result = mlffc("data", "import", tmp_path / "in.extxyz", "--out", tmp_path / "d.h5", "--label-source", "DFT (ORCA)")
    assert result.returncode == 0, result.stderr
    assert read_frames(tmp_path / "d.h5").attrs["label_source"] == "DFT (ORCA)"
    result = mlffc("data", "export", tmp_path / "d.h5", tmp_path / "out.extxyz")
    assert result.returncode == 0, result.stderr
    assert len(import_frames([tmp_path / "out.extxyz"], "x")) == 10
    bad = mlffc("data", "import", tmp_path / "nope.extxyz", "--out", tmp_path / "e.h5", "--label-source", "DFT")
    assert bad.returncode != 0 and "file not found" in bad.stderr + bad.stdout
    assert not (tmp_path / "e.h5").exists() and not list(tmp_path.glob(".e.h5*"))


def test_check_reads_an_extxyz_with_further_references(artifact, small_data, tmp_path):
    """`check --data FILE.extxyz`: its calculator labels are the gated reference, every named key
    pair an extra, ungated one; a reference equal to the labels scores the same, a shifted one not."""
    from mlffc.check import Limits, check_artifact
    from mlffc.data.storage import read_dataset

    test = read_dataset(small_data).split_named("test")
    export_extxyz(test, tmp_path / "test.extxyz")
    images = read(tmp_path / "test.extxyz", ":")
    for atoms in images:
        atoms.info["same_energy"], atoms.arrays["same_forces"] = atoms.get_potential_energy(), atoms.get_forces()
        atoms.info["dft_energy"], atoms.arrays["dft_forces"] = atoms.get_potential_energy() + 1.0, atoms.get_forces() + 0.5
    write(tmp_path / "refs.extxyz", images)
    report = check_artifact(artifact, tmp_path / "refs.extxyz", Limits(force_mae=100.0, energy_mae_per_atom=100.0),
                            reference_keys=[("same_energy", "same_forces"), ("dft_energy", "dft_forces")])
    assert report["frames"] == len(test) and report["labels"] == "labels of refs.extxyz"
    same, dft = report["vs_references"]["same_energy,same_forces"], report["vs_references"]["dft_energy,dft_forces"]
    assert same["force_mae"] == pytest.approx(report["vs_teacher"]["force_mae"], rel=1e-9)
    assert dft["force_mae"] != pytest.approx(same["force_mae"]) and dft["energy_mae_per_atom"] != pytest.approx(same["energy_mae_per_atom"])
    with pytest.raises(MlffcError, match="--reference-keys reads info/arrays keys"):
        check_artifact(artifact, small_data, Limits(), reference_keys=[("a", "b")])
