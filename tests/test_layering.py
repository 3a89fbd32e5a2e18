"""Dependencies point one way: the runtime never imports teachers, data, trainers or JAX."""

import subprocess
import sys

import pytest

FORBIDDEN = ("jax", "fennol", "mlffc.teachers", "mlffc.data", "mlffc.trainers", "mlffc.compiler")


def _imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.slow
def test_runtime_imports_nothing_from_training_side(artifact):
    loaded = _imported_after(
        f"import mlffc.runtime as r\nfrom ase.build import molecule\nm = r.load({str(artifact)!r})\nm.compute(molecule('H2O'))"
    )
    assert not {m for m in loaded if m.split(".")[0] in FORBIDDEN or any(m.startswith(f) for f in FORBIDDEN)}


def test_teachers_know_nothing_of_students():
    loaded = _imported_after("import mlffc.teachers, mlffc.teachers.fennol")
    assert not {m for m in loaded if m.startswith(("mlffc.students", "mlffc.trainers", "mlffc.runtime", "torch"))}
