"""An AOTInductor artifact that calls the fused ops runs from C++: dlopen the op library shipped
in the artifact, then AOTIModelPackageLoader (libtorch from the torch wheel)."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from mlffc.runtime import load

pytestmark = pytest.mark.slow
SOURCE = Path(__file__).parent / "cpp" / "run_artifact.cpp"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    torch_dir = Path(torch.__file__).parent
    binary = tmp_path_factory.mktemp("cpp") / "run_artifact"
    subprocess.run([compiler, "-O1", "-std=c++20", str(SOURCE), "-o", str(binary), f"-I{torch_dir / 'include'}",
                    f"-I{torch_dir / 'include/torch/csrc/api/include'}", f"-L{torch_dir / 'lib'}", "-ltorch", "-ltorch_cpu",
                    "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}", "-ldl"], check=True, capture_output=True)
    return binary


def test_artifact_with_custom_ops_runs_from_cpp(runner, artifact):
    manifest = load(artifact).manifest
    assert manifest["backend"]["libraries"] == ["mlffc_ops.so"]
    result = subprocess.run([str(runner), str(artifact / "model.pt2"), str(artifact / "mlffc_ops.so")],
                            capture_output=True, text=True, check=True)
    values = np.array(result.stdout.split(), dtype=np.float64)
    water = Atoms("OHH", positions=[[0, 0, 0.119], [0, 0.763, -0.477], [0, -0.763, -0.477]])
    python = load(artifact).compute(water)
    assert values[0] == pytest.approx(python["energy"][0], abs=1e-4)
    np.testing.assert_allclose(values[1:].reshape(3, 3), python["forces"][0], atol=1e-5)
    without = subprocess.run([str(runner), str(artifact / "model.pt2")], capture_output=True, text=True)
    assert without.returncode != 0  # the package needs the op library
