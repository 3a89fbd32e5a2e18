"""bench/bench_peers.py without the peers' environments: argument checks, the settings guard
that makes it resumable, and the table writer."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlffc.errors import MlffcError

SPEC = importlib.util.spec_from_file_location("bench_peers", Path(__file__).parents[1] / "bench" / "bench_peers.py")
bench_peers = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_peers)


def test_sizes_are_water_cluster_atom_counts():
    assert bench_peers.parse_sizes("30,300,1000,3000") == (30, 300, 1000, 3000)
    with pytest.raises(MlffcError, match="at least 3 atoms.*0"):
        bench_peers.parse_sizes("30,0")
    with pytest.raises(MlffcError, match="comma-separated"):
        bench_peers.parse_sizes("30,big")


@pytest.mark.parametrize("change, message", [({"minutes": 0.0}, "--minutes 0.0"), ({"mace_irreps": "64x0e"}, "32x0e"),
                                             ({"peers": ["allegro"]}, "nequip, mace")])
def test_bad_arguments_name_the_value_and_what_is_allowed(change, message):
    args = SimpleNamespace(minutes=5.0, mace_irreps="32x0e", peers=["nequip", "mace"], data=None)
    bench_peers.check_args(args)
    for key, value in change.items():
        setattr(args, key, value)
    with pytest.raises(MlffcError, match=message):
        bench_peers.check_args(args)


def test_a_finished_run_with_other_settings_is_refused(tmp_path):
    assert not bench_peers.check_settings(tmp_path / "nequip", {"minutes": 5.0})
    (tmp_path / "nequip" / "done.json").write_text("{}")
    assert bench_peers.check_settings(tmp_path / "nequip", {"minutes": 5.0})
    with pytest.raises(MlffcError, match="minutes"):
        bench_peers.check_settings(tmp_path / "nequip", {"minutes": 10.0})


def test_table_has_a_row_per_model_and_the_errors(tmp_path):
    test = {"all": {"force_mae": 0.05, "energy_mae_per_atom": 0.002}}
    report = {"sizes": [30, 300], "minutes": 5.0, "uptime_before": "load 1", "uptime_after": "load 2",
              "data": {"path": "d.h5", "frames": {"train": 8, "val": 1, "test": 1}},
              "rows": [{"name": "ours", "parameters": 1000, "speed": {30: 1.0, 300: 9.5}, "test": test, "training": "pretrained"},
                       {"name": "MACE", "train_seconds": 300.0, "epochs": 7, "speed": {30: 12.0}, "test": test},
                       {"name": "NequIP", "error": "nequip-train exited with 1"}]}
    text = bench_peers.write(tmp_path, report)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3  # header and one row per model
    assert "| ours |  | 1,000 | pretrained |  | 0.0500 | 2.00 | 1.0 | 9.5 |" in rows
    assert "5.0 min, 7 epochs" in rows[2] and rows[2].endswith("| 12.0 |  |")
    assert "- NequIP: nequip-train exited with 1" in text
    assert json.loads((tmp_path / "peers.json").read_text())["rows"][1]["epochs"] == 7
