"""The command line end to end on a tiny problem, and its error messages."""

import json
import subprocess
import sys

import pytest


def mlffc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlffc", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_lists():
    for command, expected in (("teachers", "ani1x"), ("students", "moment"), ("targets", "a100")):
        result = mlffc(command)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_missing_artifact_is_a_clear_error(tmp_path):
    result = mlffc("check", tmp_path / "nothing", "--data", tmp_path / "none.h5")
    assert result.returncode == 2
    assert "artifact not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    result = mlffc("train", "--data", tmp_path / "none.h5", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "dataset not found" in result.stderr and "Traceback" not in result.stderr


def test_unknown_target(tmp_path):
    result = mlffc("compile", tmp_path / "s.safetensors", "--target", "tpu9", "--out", tmp_path / "a")
    assert result.returncode == 2 and "unknown target 'tpu9'" in result.stderr


def test_plan_needs_no_gpu():
    result = mlffc("compile", "--target", "h100", "--plan")
    assert result.returncode == 0 and "sm_90" in result.stdout


@pytest.mark.slow
def test_pipeline_generate_train_compile_check(tmp_path):
    data, run, artifact = tmp_path / "d.h5", tmp_path / "run", tmp_path / "art"
    result = mlffc("generate", "--out", data, "--limit", 12, "--md-steps", 16, "--rattles-per-scale", 2)
    assert result.returncode == 0, result.stderr
    assert mlffc("generate", "--out", data, "--limit", 2).returncode == 2  # never overwrites silently
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nstudent: {channels: 8, hidden: [16]}\n")
    result = mlffc("train", config, "--data", data, "--out", run)
    assert result.returncode == 0, result.stderr
    assert (run / "student.safetensors").exists() and (run / "loss_curve.png").exists()
    result = mlffc("compile", run / "student.safetensors", "--target", "cpu", "--data", data, "--out", artifact)
    assert result.returncode == 0, result.stderr
    report = tmp_path / "report.json"
    result = mlffc("check", artifact, "--data", data, "--max-force-mae", 100, "--max-energy-mae", 100,
                   "--plot", tmp_path / "parity.png", "--json", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report.read_text())["passed"] and (tmp_path / "parity.png").exists()
    result = mlffc("check", artifact, "--data", data, "--max-force-mae", 1e-6)
    assert result.returncode == 1 and "FAILED" in result.stdout


def test_plan_shows_passes_and_backend():
    result = mlffc("compile", "--target", "cpu", "--backend", "onnxruntime", "--plan")
    assert result.returncode == 0, result.stderr
    assert "lower_broadcasts_to_matmuls" in result.stdout and "backend onnxruntime" in result.stdout
    assert "fuse_edge_scatter" not in result.stdout  # onnxruntime cannot run the fused ops
    result = mlffc("compile", "--target", "cpu", "--passes", "fuse_edge_scatter,remove_dead_code", "--precision", "bf16", "--plan")
    assert result.returncode == 0 and "fuse_edge_scatter" in result.stdout and "precision bf16" in result.stdout


def test_unknown_pass_and_precision_are_clear_errors():
    result = mlffc("compile", "--target", "cpu", "--passes", "fuse_everything", "--plan")
    assert result.returncode == 2 and "unknown pass 'fuse_everything'" in result.stderr
    assert "Traceback" not in result.stderr
