"""The C++ runtime (runtime-cpp/): built with CMake against the wheel's libtorch, its runner gives
the Python runtime's numbers, its cell list vesin's pairs, and it refuses what Python refuses."""

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import write

from mlffc.data.clusters import molecular_cluster
from mlffc.graph import neighbour_list
from mlffc.runtime import load
from mlffc.runtime.build_cpp import build_cpp, missing_tools
from mlffc.runtime.manifest import sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cpp_runner(request, tmp_path_factory) -> Path:
    """The runner, built once per session; in pytest's cache when there is one, so a rerun only
    recompiles what changed."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"cannot build the C++ runtime here: {missing}")
    cache = getattr(request.config, "cache", None)
    build_dir = cache.mkdir("runtime-cpp-build") if cache else tmp_path_factory.mktemp("runtime-cpp-build")
    return build_cpp(Path(build_dir), quiet=True)


def run(runner, *args):
    return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True, timeout=300)


def frames_of(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def triclinic_box() -> Atoms:
    """A skewed periodic cell thinner than the cutoff along one direction, so that a pair has
    several images, with some atoms outside the cell."""
    rng = np.random.default_rng(4)
    cell = np.array([[6.0, 0, 0], [1.5, 4.5, 0], [-1.0, 0.8, 7.0]])
    while True:
        atoms = Atoms("OH2" * 4, cell=cell, pbc=True, scaled_positions=rng.uniform(0, 1, (12, 3)))
        distances = atoms.get_all_distances(mic=True)
        if distances[np.triu_indices(12, 1)].min() > 1.0:
            break
    atoms.positions[:3] += cell[0] - 2 * cell[2]
    return atoms


def structures() -> list[Atoms]:
    box = molecular_cluster("H2O", 27, periodic=True)
    box.rattle(0.05, seed=1)
    box.positions[:5] += box.cell[0] * 1.3  # unwrapped positions, as MD leaves them
    return [molecule("CH3CONH2"), box, triclinic_box(), molecule("H2O")[:1]]


def test_runner_prints_the_python_runtime_numbers(cpp_runner, artifact, tmp_path):
    model = load(artifact)
    path = tmp_path / "structures.xyz"
    write(path, structures(), format="extxyz")
    frames = frames_of(run(cpp_runner, artifact, path))
    assert len(frames) == len(structures())
    for atoms, frame in zip(structures(), frames):
        expected = model.compute(atoms)
        assert frame["atoms"] == len(atoms)
        assert frame["energy"] == pytest.approx(expected["energy"][0], abs=1e-4 * len(atoms))
        # fp32: rounding grows with the largest terms summed, so each tolerance grows with its largest value
        for key, atol in (("forces", 1e-4), ("stress", 1e-6)):
            reference = expected[key][0]
            np.testing.assert_allclose(frame[key], reference, rtol=0, atol=atol + 2e-6 * np.abs(reference).max(), err_msg=key)


def test_cell_list_lists_vesin_pairs(cpp_runner, artifact, tmp_path):
    cutoff = load(artifact).cutoff
    atoms_list = structures()
    path = tmp_path / "structures.xyz"
    write(path, atoms_list, format="extxyz")
    for atoms, frame in zip(atoms_list, frames_of(run(cpp_runner, artifact, path, "--edges"))):
        periodic = bool(atoms.pbc.all())
        i, j, s = neighbour_list(atoms.positions, atoms.cell.array, periodic, cutoff)
        pairs = frame["neighbours"]
        listed = list(zip(pairs["centre"], pairs["neighbour"], map(tuple, pairs["shifts"])))
        assert sorted(listed) == listed, "centre-sorted (then neighbour, shift)"
        assert set(listed) == set(zip(i.tolist(), j.tolist(), map(tuple, s.astype(int).tolist())))
        assert len(listed) == len(i) == frame["edges"]


def test_runner_reports_timing(cpp_runner, artifact, tmp_path):
    path = tmp_path / "water.xyz"
    write(path, molecular_cluster("H2O", 10), format="extxyz")
    (frame,) = frames_of(run(cpp_runner, artifact, path, "--repeat", 5))
    timing = frame["timing"]
    assert timing["repeat"] == 5 and all(np.isfinite(timing[k]) and timing[k] > 0 for k in ("compute_ms", "neighbours_ms", "model_ms"))
    # each run's total is its neighbour list plus its model call, so the median total bounds each
    # part's median (no comparison of two separate measurements, which could go either way)
    assert max(timing["neighbours_ms"], timing["model_ms"]) <= timing["compute_ms"]


def _copy(artifact, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    return copy


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda m: m["built_on"].update(torch="2.99.0"), r"built with torch 2.99.0.*rebuild it here with `mlffc compile --target cpu`"),
        (lambda m: m["built_on"].update(machine="riscv64"), "built for riscv64 CPUs"),
        (lambda m: m.update(schema_version=7), "manifest schema 7 is newer"),
        (lambda m: m["model"].pop("cutoff"), "manifest has no 'model.cutoff'"),
        (lambda m: m["target"].update(device="cuda"), "the C\\+\\+ runtime runs cpu artifacts"),
    ],
    ids=["torch", "machine", "schema", "field", "device"],
)
def test_runner_refuses_a_mismatched_manifest(cpp_runner, artifact, tmp_path, spoil, message):
    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    spoil(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    result = run(cpp_runner, copy, tmp_path / "h2o.xyz")
    assert result.returncode == 2 and result.stdout == ""
    assert re.search(message, result.stderr), result.stderr


def test_runner_refuses_a_tampered_payload_and_bad_files(cpp_runner, artifact, tmp_path):
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    copy = _copy(artifact, tmp_path)
    with open(copy / "model.pt2", "ab") as handle:
        handle.write(b"\0")
    cases = {
        "does not match its SHA-256": (copy, tmp_path / "h2o.xyz"),
        "artifact not found": (tmp_path / "nothing", tmp_path / "h2o.xyz"),
        "cannot read": (artifact, tmp_path / "none.xyz"),
    }
    broken = _copy(artifact, tmp_path / "b")
    (broken / "manifest.json").write_text('{"schema_version": 1,')
    cases["is not valid JSON: invalid JSON at line 1"] = (broken, tmp_path / "h2o.xyz")
    (tmp_path / "bad.xyz").write_text("3\n\nO 0 0 0\nH 0 0 x\n")
    cases["bad.xyz:4: bad coordinate 'x'"] = (artifact, tmp_path / "bad.xyz")
    write(tmp_path / "ch3cl.xyz", molecule("CH3Cl"))
    cases["element Cl is not supported"] = (artifact, tmp_path / "ch3cl.xyz")
    for message, (artifact_path, structures_path) in cases.items():
        result = run(cpp_runner, artifact_path, structures_path)
        assert result.returncode == 2 and message in result.stderr, (message, result.stderr)
    assert run(cpp_runner, artifact).returncode == 2
    assert run(cpp_runner, artifact, tmp_path / "h2o.xyz", "--repeat", "-1").returncode == 2


def test_c_api(cpp_runner, artifact):
    """The C API through ctypes: create, compute, errors with a message, destroy."""
    lib = ctypes.CDLL(str(cpp_runner.parent / "libmlffc.so"))
    lib.mlffc_model_create.restype = ctypes.c_void_p
    lib.mlffc_model_create.argtypes = [ctypes.c_char_p, ctypes.c_int32]
    lib.mlffc_model_compute.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 7
    lib.mlffc_model_cutoff.restype = ctypes.c_double
    lib.mlffc_model_cutoff.argtypes = [ctypes.c_void_p]
    lib.mlffc_model_destroy.argtypes = [ctypes.c_void_p]
    lib.mlffc_last_error.restype = ctypes.c_char_p

    assert lib.mlffc_model_create(b"/nonexistent", 0) is None
    assert b"artifact not found" in lib.mlffc_last_error()
    handle = lib.mlffc_model_create(str(artifact).encode(), 1)
    assert handle, lib.mlffc_last_error()
    model = load(artifact)
    assert lib.mlffc_model_cutoff(handle) == model.cutoff

    def compute(atoms, pbc):
        species = np.ascontiguousarray(atoms.numbers, dtype=np.int32)
        positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(pbc, dtype=np.int32)
        energy, forces, stress = np.zeros(1), np.zeros((len(atoms), 3)), np.zeros((3, 3))
        status = lib.mlffc_model_compute(handle, len(atoms), *(a.ctypes.data for a in (species, positions, cell, pbc, energy, forces, stress)))
        return status, energy[0], forces, stress

    box = molecular_cluster("H2O", 27, periodic=True)
    status, energy, forces, stress = compute(box, [1, 1, 1])
    expected = model.compute(box)
    assert status == 0
    assert energy == pytest.approx(expected["energy"][0], abs=1e-3)
    np.testing.assert_allclose(forces, expected["forces"][0], atol=1e-4)
    np.testing.assert_allclose(stress, expected["stress"][0], atol=1e-6)
    assert compute(box, [1, 0, 1])[0] != 0 and b"partial periodicity" in lib.mlffc_last_error()
    assert compute(molecule("CH3Cl"), [0, 0, 0])[0] != 0 and b"element Cl is not supported" in lib.mlffc_last_error()
    lib.mlffc_model_destroy(handle)


def test_runner_reads_escapes_and_refuses_non_finite_numbers(cpp_runner, artifact, tmp_path):
    """\\u escapes (Python's json writes Å so) load; a NaN or infinity anywhere is refused, named by
    its path, as Manifest.read refuses it (the JSON reader parses Python's NaN and Infinity tokens)."""
    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    manifest["accuracy"]["note"] = {"text": "Å \U0001f600 \"q\" \\ /"}
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))
    assert len(frames_of(run(cpp_runner, copy, tmp_path / "h2o.xyz"))) == 1
    for value, shown in [(float("nan"), "nan"), ([1.0, float("inf")], "inf"), (-float("inf"), "-inf")]:
        manifest["accuracy"]["note"] = {"value": value}
        (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))
        result = run(cpp_runner, copy, tmp_path / "h2o.xyz")
        where = "accuracy.note.value" + ("[1]" if isinstance(value, list) else "")
        assert result.returncode == 2 and f"manifest field {where} is {shown}" in result.stderr, result.stderr


def _outside(manifest, copy, name):
    outside = copy.parent / "evil.so"
    shutil.copyfile(copy / manifest["backend"]["entry"], outside)
    manifest["payload"][name] = sha256_file(outside)
    manifest["backend"]["libraries"] = [name]
    return outside


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "unlisted entry", "older schema"])
def test_runner_refuses_files_outside_the_artifact(cpp_runner, artifact, tmp_path, case):
    """Issue 11: payload and library names must resolve inside the artifact and be hashed."""
    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    if case == "dotdot":
        _outside(manifest, copy, "../evil.so")
        message = "outside the artifact directory"
    elif case == "absolute":
        _outside(manifest, copy, str(tmp_path / "evil.so"))
        message = "only relative names inside the artifact"
    elif case == "symlink":
        (copy / "link.so").symlink_to(_outside(manifest, copy, "link.so"))
        message = "outside the artifact directory"
    elif case == "unlisted entry":
        shutil.copyfile(copy / manifest["backend"]["entry"], copy / "other.pt2")
        manifest["backend"]["entry"] = "other.pt2"
        message = "has no hash in payload"
    else:
        manifest["schema_version"] = 1
        message = "older than this runtime reads"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    result = run(cpp_runner, copy, tmp_path / "h2o.xyz")
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_runner_refuses_bad_cells_and_keeps_a_far_molecule(cpp_runner, artifact, tmp_path):
    """Issue 11: cells checked before the neighbour search (a crash would be a negative return
    code here); a molecule 1e7 Å out gives the energy it has at the origin."""
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    cases = {"at most 1e4": water.copy(), "denser than any matter": Atoms("H", cell=np.eye(3) * 0.3, pbc=True),
             "thick": Atoms("H", cell=np.diag([50, 50, 0.01]), pbc=True)}
    cases["at most 1e4"].set_cell(np.diag([10, 10, 3e6]))
    cases["at most 1e4"].pbc = True
    for message, atoms in cases.items():
        write(tmp_path / "bad.xyz", atoms, format="extxyz")
        result = run(cpp_runner, artifact, tmp_path / "bad.xyz")
        assert result.returncode == 2 and message in result.stderr, (message, result.returncode, result.stderr)
    ethanol = molecule("CH3CH2OH")
    far = ethanol.copy()
    far.positions += 1e7
    write(tmp_path / "two.xyz", [ethanol, far], format="extxyz")
    near_frame, far_frame = frames_of(run(cpp_runner, artifact, tmp_path / "two.xyz"))
    assert abs(near_frame["energy"] - far_frame["energy"]) < 1e-4
