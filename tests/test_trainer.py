import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlffc.data.loader import GraphDataset
from mlffc.data.storage import read_frames
from mlffc.errors import MlffcError
from mlffc.trainers import TrainConfig, train
from mlffc.trainers.distill import STATE_FILE
from mlffc.trainers.losses import term_errors
from mlffc.trainers.state import load_state

TINY = {"channels": 4, "hidden": [8], "interactions": 2}


def _config(data, **changes):
    settings = dict(data=str(data), epochs=2, student=TINY, max_atoms_per_batch=96, tensorboard=False, threads=1)
    settings.update(changes)
    return TrainConfig(**settings)


def _weights(run_dir):
    return load_state(run_dir / STATE_FILE)["student"]


def test_resume_equals_uninterrupted(tmp_path, small_data):
    config = _config(small_data)
    _, whole = train(config, tmp_path / "whole")
    steps = whole["steps"]
    _, first = train(config, tmp_path / "split", stop_after_steps=steps // 2 + 1)  # stops mid-epoch 2
    assert first["steps"] == steps // 2 + 1 and len(first["history"]) == 1
    _, resumed = train(config, tmp_path / "split")
    assert resumed["steps"] == steps
    for name, value in _weights(tmp_path / "whole").items():
        assert torch.equal(value, _weights(tmp_path / "split")[name]), name
    assert [h["val_force_mae"] for h in whole["history"]] == [h["val_force_mae"] for h in resumed["history"]]


def test_same_seed_same_run_and_config_written_back(tmp_path, small_data):
    config = _config(small_data, epochs=1, loss="huber", schedule="plateau")
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    for name, value in _weights(tmp_path / "a").items():
        assert torch.equal(value, _weights(tmp_path / "b")[name]), name
    assert TrainConfig.from_file(tmp_path / "a" / "train_config.yaml") == config
    assert (tmp_path / "a" / "loss_curve.png").exists() and (tmp_path / "a" / "student.safetensors").exists()


def test_resume_refuses_other_settings(tmp_path, small_data):
    train(_config(small_data, epochs=1), tmp_path / "run")
    with pytest.raises(MlffcError, match="other settings.*--restart"):
        train(_config(small_data, epochs=1, lr=1e-4), tmp_path / "run")
    train(_config(small_data, epochs=1, lr=1e-4), tmp_path / "run", restart=True)


def test_unknown_setting_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(MlffcError, match="unknown training settings: learning_rate"):
        TrainConfig.from_file(tmp_path / "c.yaml")


def test_hessian_vector_product_matches_finite_differences(small_data):
    from mlffc.students import build_student

    torch.manual_seed(0)
    student = build_student("moment", species=[1, 6, 7, 8], **TINY).double().train()
    frames = read_frames(small_data)
    dataset = GraphDataset(frames.select([0, 1]), student.cutoff)
    batch = dataset.batch(np.array([0, 1]))
    batch.graph.positions = batch.graph.positions.double()
    batch.graph.shifts, batch.graph.cell = batch.graph.shifts.double(), batch.graph.cell.double()
    direction = torch.randn_like(batch.graph.positions)
    batch.hessian_direction, batch.hessian_product = direction, torch.zeros_like(direction)
    batch.hessian_mask = torch.ones(len(direction), dtype=torch.bool)
    batch.forces, batch.energy = batch.forces.double(), batch.energy.double()
    hessian_product = term_errors(student, batch, with_hessian=True)["hessian"].view(-1, 3)
    h = 1e-5
    positions = batch.graph.positions.detach()
    plus = student(positions + h * direction, *batch.graph.inputs()[1:])[1]
    minus = student(positions - h * direction, *batch.graph.inputs()[1:])[1]
    np.testing.assert_allclose(hessian_product.detach(), (-(plus - minus) / (2 * h)).detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, small_data):
    """DDP over 2 gloo processes and one process see the same global batches: same weights."""
    config = _config(small_data, epochs=1, ema_decay=0.0)
    config.write(tmp_path / "config.yaml")
    train(config, tmp_path / "single")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    result = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29531", "-m", "mlffc", "train",
                             str(tmp_path / "config.yaml"), "--out", str(tmp_path / "ddp")],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]
    single, ddp = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    for name, value in single.items():
        if value.is_floating_point():
            np.testing.assert_allclose(ddp[name].double().numpy(), value.double().numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
