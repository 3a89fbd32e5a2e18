"""Shared fixtures: the bundled teacher, a small labelled dataset, a briefly trained student and
its cpu artifact, each built once per test session."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mlffc.data.generate import generate
from mlffc.data.sampling_config import SamplingConfig
from mlffc.data.seeds import seed_molecules

SMALL_SEEDS = ("g2/CH4", "g2/H2O", "g2/CH3OH", "g2/HCN", "g2/C2H4", "g2/NH3", "g2/CH3CONH2", "g2/H2CO", "s22/Water_dimer")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def teacher():
    from mlffc.teachers import load_teacher

    return load_teacher("ani1x")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, teacher):
    """~200 labelled frames of 9 small molecules, split by molecule."""
    from mlffc.data.storage import write_frames

    seeds = [s for s in seed_molecules() if s[0] in SMALL_SEEDS]
    config = SamplingConfig(rattles_per_scale=3, md_steps=32, md_interval=4, md_temperatures=(500.0,), relax_steps=60,
                            normal_modes_per_temperature=0)  # normal modes: tests/test_generate.py
    frames = generate(seeds, teacher, config, holdout=(0.15, 0.15))
    path = tmp_path_factory.mktemp("data") / "small.h5"
    write_frames(path, frames)
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_data):
    from mlffc.trainers import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(data=str(small_data), epochs=6, student={"channels": 8, "hidden": [32, 32]}, max_atoms_per_batch=128)
    student, result = train(config, out)
    return out, student, result


@pytest.fixture(scope="session")
def artifact(tmp_path_factory, trained_run, small_data):
    from mlffc.compiler import compile_student, resolve_target

    out = tmp_path_factory.mktemp("artifacts") / "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # a compile prints no library deprecation warnings
        compile_student(trained_run[0] / "student.safetensors", resolve_target("cpu"), out, small_data)
    return out


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, trained_run, small_data):
    from mlffc.compiler import compile_student, resolve_target

    out = tmp_path_factory.mktemp("artifacts") / "cpu-onnxruntime"
    compile_student(trained_run[0] / "student.safetensors", resolve_target("cpu", "onnxruntime"), out, small_data)
    return out


@pytest.fixture(scope="session")
def tvm_artifact(tmp_path_factory, trained_run, small_data):
    from mlffc.compiler import compile_student, resolve_target

    out = tmp_path_factory.mktemp("artifacts") / "cpu-tvm"
    compile_student(trained_run[0] / "student.safetensors", resolve_target("cpu", "tvm"), out, small_data)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)
