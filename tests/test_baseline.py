"""Accuracy baselines (`mlffc check --write-baseline`, `--baseline`; toolchain/check.py) on the
session's cpu artifact and small dataset, and example 05 (the CI accuracy gate) run end to end."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlffc.check import (BASELINE_FORMAT_VERSION, artifact_source, check_artifact, check_same_data, compare_with_baseline,
                         data_source, default_tolerance, make_baseline, read_baseline, write_baseline)
from mlffc.check_settings import Limits
from mlffc.errors import MlffcError
from mlffc.metrics import BASELINE_METRICS

pytestmark = pytest.mark.slow  # the session's artifact: a trained and compiled student
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "05-accuracy-gate"
LOOSE = Limits(force_mae=100, energy_mae_per_atom=100)  # the toy student is poor; the baseline is what is gated here


def mlffc(*args):
    return subprocess.run([sys.executable, "-m", "mlffc", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def report(artifact, small_data):
    return check_artifact(artifact, small_data, LOOSE)


@pytest.fixture(scope="module")
def baseline(report, artifact, small_data):
    return make_baseline(report, artifact_source(artifact), data_source(small_data, "test"))


def test_round_trip_keeps_every_figure(baseline, report, tmp_path):
    path = tmp_path / "baseline.json"
    write_baseline(path, baseline)
    assert read_baseline(path) == baseline
    assert baseline["format_version"] == BASELINE_FORMAT_VERSION and baseline["tolerance"] == default_tolerance()
    assert baseline["metrics"]["all"] == {name: report["vs_teacher"][name] for name in BASELINE_METRICS}
    categories = {f"category/{name}" for name in report["by_category"] if name != "all"}
    assert categories and set(baseline["metrics"]) == {"all"} | categories
    assert baseline["data"]["frames"] == report["frames"] and len(baseline["data"]["sha256"]) == 64
    assert baseline["artifact"]["target"] == "cpu" and baseline["artifact"]["payload"]


def test_the_same_figures_pass(baseline, report):
    comparison = compare_with_baseline(report, baseline, Path("b.json"))
    assert comparison["failures"] == [] and len(comparison["rows"]) == 3 * len(baseline["metrics"])
    assert all(row["measured"] == row["baseline"] and not row["regressed"] for row in comparison["rows"])


def test_a_figure_beyond_its_tolerance_fails_and_one_within_passes(baseline, report):
    group = next(g for g in baseline["metrics"] if g.startswith("category/"))
    measured = baseline["metrics"][group]["force_mae"]
    assert measured * 0.05 > default_tolerance()["absolute"]["force_mae"]  # the relative term decides here
    worse, within = copy.deepcopy(baseline), copy.deepcopy(baseline)
    worse["metrics"][group]["force_mae"] = measured / 1.06  # now 6% above the baseline
    within["metrics"][group]["force_mae"] = measured / 1.04
    failures = compare_with_baseline(report, worse, Path("b.json"))["failures"]
    assert len(failures) == 1 and failures[0].startswith(f"{group} force_mae regressed") and "+6.0%" in failures[0]
    assert compare_with_baseline(report, within, Path("b.json"))["failures"] == []
    floor = copy.deepcopy(baseline)  # a zero baseline allows the absolute floor, not 5% of nothing
    floor["metrics"]["all"]["energy_mae_per_atom"] = 0.0
    row = next(r for r in compare_with_baseline(report, floor, Path("b.json"))["rows"]
               if r["group"] == "all" and r["metric"] == "energy_mae_per_atom")
    assert row["allowed"] == default_tolerance()["absolute"]["energy_mae_per_atom"]
    assert row["regressed"] == (report["vs_teacher"]["energy_mae_per_atom"] > row["allowed"])


def test_non_finite_figures_are_refused(baseline, report, tmp_path):
    broken = copy.deepcopy(report)
    broken["by_category"][next(n for n in broken["by_category"] if n != "all")]["force_rmse"] = float("nan")
    with pytest.raises(MlffcError, match="non-finite figures.*force_rmse = nan"):
        compare_with_baseline(broken, baseline, Path("b.json"))
    with pytest.raises(MlffcError, match="non-finite"):
        make_baseline(broken, baseline["artifact"], baseline["data"])
    for where, value in ((("metrics", "all", "force_mae"), float("inf")), (("tolerance", "relative"), float("nan")),
                         (("metrics", "all", "force_rmse"), -1.0), (("tolerance", "absolute", "force_mae"), "0.1")):
        stored = copy.deepcopy(baseline)
        parent = stored
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(stored))  # json.dumps writes NaN and Infinity; read_baseline must refuse them
        with pytest.raises(MlffcError, match=f"{where[-1]} must be a finite number >= 0, got {value!r}"):
            read_baseline(path)


def test_another_format_or_not_a_baseline_is_refused(baseline, report, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline | {"format_version": BASELINE_FORMAT_VERSION + 1}))
    with pytest.raises(MlffcError, match=f"format version {BASELINE_FORMAT_VERSION + 1}; this mlffc reads version"):
        read_baseline(path)
    path.write_text(json.dumps({"passed": True, "failures": []}))  # a `check --json` report is no baseline
    with pytest.raises(MlffcError, match="not an mlffc accuracy baseline"):
        read_baseline(path)
    path.write_text(json.dumps(baseline | {"metrics": {"all": {"force_mae": 0.1}}}))
    with pytest.raises(MlffcError, match="metrics of all must be exactly force_mae, force_rmse, energy_mae_per_atom"):
        read_baseline(path)
    with pytest.raises(MlffcError, match="baseline not found"):
        read_baseline(tmp_path / "missing.json")


def test_other_data_or_split_is_refused(baseline, small_data, tmp_path):
    check_same_data(baseline, data_source(small_data, "test"), Path("b.json"))
    with pytest.raises(MlffcError, match="other split"):
        check_same_data(baseline, data_source(small_data, "val"), Path("b.json"))
    changed = tmp_path / "changed.h5"
    shutil.copyfile(small_data, changed)
    with open(changed, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(MlffcError, match=r"other data \(SHA-256\)"):
        check_same_data(baseline, data_source(changed, "test"), Path("b.json"))


def test_cli_writes_a_baseline_and_gates_on_it(artifact, small_data, tmp_path):
    path = tmp_path / "baseline.json"
    loose = ("--max-force-mae", 100, "--max-energy-mae", 100)
    result = mlffc("check", artifact, "--data", small_data, *loose, "--write-baseline", path)
    assert result.returncode == 0 and path.exists(), result.stdout + result.stderr
    result = mlffc("check", artifact, "--data", small_data, *loose, "--baseline", path, "--json", tmp_path / "r.json")
    assert result.returncode == 0 and "REGRESSED" not in result.stdout, result.stdout + result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["baseline"]["failures"] == []
    stored = json.loads(path.read_text())
    stored["metrics"]["all"]["force_mae"] /= 2
    tightened = tmp_path / "tightened.json"
    tightened.write_text(json.dumps(stored))
    result = mlffc("check", artifact, "--data", small_data, *loose, "--baseline", tightened)
    assert result.returncode == 1 and "REGRESSED" in result.stdout and "all force_mae regressed" in result.stdout
    result = mlffc("check", artifact, "--data", small_data, *loose, "--split", "val", "--baseline", path)
    assert result.returncode == 2 and "other split" in " ".join(result.stderr.split())
    result = mlffc("check", artifact, "--data", small_data, "--max-force-mae", 1e-9, "--write-baseline", tmp_path / "failed.json")
    assert result.returncode == 1 and not (tmp_path / "failed.json").exists()
    result = mlffc("check", artifact, "--md", "--baseline", path)
    assert result.returncode == 2 and "give --data" in " ".join(result.stderr.split())  # rich wraps at 80 columns


def test_example_05_gate_passes_on_its_committed_baseline_and_fails_a_tightened_one(tmp_path):
    """The example's script as CI runs it (compile the bundled student for cpu, check against the
    committed baseline), then its artifact against a baseline whose figures were made 10% better."""
    env = {**os.environ, "PYTHON": sys.executable, "WORKDIR": str(tmp_path)}
    result = subprocess.run(["bash", EXAMPLE / "gate.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "PASSED" in result.stdout, result.stdout + result.stderr
    assert json.loads((tmp_path / "check.json").read_text())["baseline"]["failures"] == []
    stored = json.loads((EXAMPLE / "baseline.json").read_text())
    for figures in stored["metrics"].values():
        for name in figures:
            figures[name] /= 1.1
    tightened = tmp_path / "tightened.json"
    tightened.write_text(json.dumps(stored))
    result = subprocess.run(["bash", EXAMPLE / "gate.sh"], capture_output=True, text=True,
                            env=env | {"BASELINE": str(tightened), "ARTIFACT": str(tmp_path / "artifact")})
    assert result.returncode == 1 and "REGRESSED" in result.stdout, result.stdout + result.stderr
    result = subprocess.run(["bash", EXAMPLE / "gate.sh"], capture_output=True, text=True,
                            env=env | {"BASELINE": str(tmp_path / "none.json")})
    assert result.returncode == 2 and "--update" in result.stderr  # no baseline: the gate refuses to pass vacuously
