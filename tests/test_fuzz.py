"""Property-based fuzzing (hypothesis) of what users hand mlffc: random structures through
`runtime.load(...).compute` and the ASE calculator (in a subprocess, so a crash of native code
fails the test instead of the suite), random manifests through the loader, random training
settings through the config. Nothing but an MlffcError or a finite result may come out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlffc.errors import MlffcError
from mlffc.runtime.manifest import MANIFEST, Manifest, check_compatible, verify_payload
from mlffc.trainers import TrainConfig

STRUCTURES_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from ase import Atoms
    from hypothesis import given, settings, strategies as st, HealthCheck
    from mlffc.errors import MlffcError
    from mlffc.runtime import load

    model = load(sys.argv[1])
    examples = int(sys.argv[2])
    seen = {"inputs": 0, "errors": 0, "results": 0}
    special = st.sampled_from([0.0, -0.0, 1e-9, 0.3, 1e4, 1e6, 3e6, 1e300, float("nan"), float("inf"), -float("inf")])
    number = st.one_of(st.floats(-20, 20), special)
    cells = st.one_of(st.none(), st.lists(number, min_size=9, max_size=9),
                      st.floats(0.05, 30).map(lambda a: [a, 0, 0, 0, a, 0, 0, 0, a]))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(n=st.integers(0, 6), numbers=st.lists(st.sampled_from([1, 6, 7, 8, 0, 17, 200]), min_size=6, max_size=6),
           coords=st.lists(number, min_size=18, max_size=18), cell=cells, shift=special | st.floats(-1e7, 1e7),
           calculator=st.booleans(), batch=st.booleans())
    def check(n, numbers, coords, cell, shift, calculator, batch):
        seen["inputs"] += 1
        try:
            positions = np.array(coords[: 3 * n], dtype=float).reshape(n, 3) + shift
            atoms = Atoms(numbers=numbers[:n], positions=positions, cell=None if cell is None else np.reshape(cell, (3, 3)),
                          pbc=cell is not None)
        except (ValueError, KeyError, IndexError):
            return  # ASE itself refuses it (unknown Z): never reaches mlffc
        try:
            if calculator:
                atoms.calc = model.calculator()
                values = [atoms.get_potential_energy(), atoms.get_forces()]
            else:
                result = model.compute([atoms, atoms.copy()] if batch else atoms)
                values = [result["energy"], *result["forces"], result["stress"]]
        except MlffcError:
            seen["errors"] += 1
            return
        assert all(np.isfinite(v).all() for v in values), (atoms, values)
        seen["results"] += 1

    started = time.perf_counter()
    check()
    print(f"{seen['inputs']} inputs: {seen['errors']} MlffcError, {seen['results']} finite results, "
          f"{time.perf_counter() - started:.1f} s")
""")


def test_random_structures_give_an_mlffc_error_or_a_finite_result(artifact, tmp_path):
    script = tmp_path / "fuzz.py"
    script.write_text(STRUCTURES_SCRIPT)
    result = subprocess.run([sys.executable, script, artifact, "300"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])  # -8: SIGFPE
    print(result.stdout)
    assert "MlffcError" in result.stdout and " finite results" in result.stdout


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


def _paths(value, prefix=()):
    """Every key path of a JSON tree."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))


@pytest.fixture(scope="module")
def manifest_copy(artifact, tmp_path_factory):
    copy = tmp_path_factory.mktemp("fuzz") / "artifact"
    shutil.copytree(artifact, copy)
    return copy, json.loads((copy / MANIFEST).read_text())


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_manifests_give_an_mlffc_error_or_load(manifest_copy, data):
    copy, original = manifest_copy
    manifest = json.loads(json.dumps(original))
    paths = sorted(_paths(manifest))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = manifest
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if data.draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = data.draw(JSON)
    text = data.draw(st.sampled_from(["json", "list", "cut"]))
    raw = json.dumps(manifest)
    (copy / MANIFEST).write_text({"json": raw, "list": json.dumps([manifest]), "cut": raw[: len(raw) // 2]}[text])
    try:
        read_back = Manifest.read(copy)
        verify_payload(copy, read_back)
        check_compatible(read_back)
    except MlffcError:
        pass


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(sorted(TrainConfig.__dataclass_fields__)), value=JSON)
def test_random_training_settings_give_an_mlffc_error_or_a_config(name, value):
    try:
        TrainConfig(**{name: value})
    except MlffcError:
        pass
