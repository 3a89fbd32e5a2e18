"""`mlffc distill`: one on-policy round end to end on a tiny system, its record, and resume of an
interrupted loop; per-atom energy labels through HDF5 and into the loss."""

import json

import numpy as np
import pytest

from mlffc.data.storage import read_dataset, read_frames, write_frames
from mlffc.errors import MlffcError
from mlffc.trainers.loop import RECORD, DistillConfig, RoundConfig, run_distill

TINY = {
    "teacher": "ani1x",
    "seeds": "molecules:10",
    "holdout": [0.2, 0.2],
    "sampling": {"mutants_per_seed": 0, "rattles_per_scale": 2, "normal_modes_per_temperature": 0, "md_steps": 16,
                 "md_interval": 8, "md_temperatures": [500.0], "packed_systems": 0, "relax_steps": 30},
    "shards": 2,
    "workers": 1,
    "train": {"epochs": 2, "student": {"channels": 4, "hidden": [16]}, "max_atoms_per_batch": 128,
              "tensorboard": False, "atomic_energy_weight": 0.1},
    "rounds": 1,
    "round": {"molecules": 4, "packed": 2, "packed_atoms": [12, 30], "temperatures": [400.0], "md_steps": 12,
              "md_interval": 4, "select": 12, "epochs": 1},
}


@pytest.mark.slow
def test_one_on_policy_round_end_to_end_and_resume(tmp_path):
    config = DistillConfig(**TINY)
    record = run_distill(config, tmp_path)
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    added = read_frames(tmp_path / "data" / "round-01.h5")
    assert 0 < len(added) <= 12 and set(added.split.tolist()) == {0}
    assert set(added.sampler.tolist()) <= {"student-md400K", "cluster", "box"}
    assert added.atomic_energy is not None and np.isfinite(added.forces).all()
    initial = read_dataset(tmp_path / "data")
    train_groups = set(initial.group[initial.split == 0].tolist())
    assert {g for g in added.group.tolist() if not g.startswith("packed/")} <= train_groups
    first = record["rounds"][1]
    assert first["added"]["added"] == len(added) and first["added"]["trajectories"] >= 4
    for split in ("val", "test"):
        assert np.isfinite(first[split]["all"]["force_mae"]) and first[split]["all"]["frames"] > 0
        assert first[f"{split}_by_source"]["all"] == first[split]["all"] and len(first[f"{split}_by_source"]) > 1
    best = min(record["rounds"], key=lambda r: r["val"]["all"]["force_mae"] + r["val"]["all"]["energy_mae_per_atom"])
    assert json.loads((tmp_path / RECORD).read_text())["best"].endswith(f"round-{best['round']:02d}/student.safetensors")

    # an interrupted loop: round 1's data survived, its training did not; only that is redone
    stamp = (tmp_path / "data" / "round-01.h5").stat().st_mtime_ns
    for path in (tmp_path / "runs" / "round-01").iterdir():
        path.unlink()
    again = run_distill(config, tmp_path)
    assert (tmp_path / "data" / "round-01.h5").stat().st_mtime_ns == stamp
    assert [r["round"] for r in again["rounds"]] == [0, 1]
    assert again["rounds"][0] == record["rounds"][0]

    changed = DistillConfig(**{**TINY, "rounds": 2})
    with pytest.raises(MlffcError, match="other settings"):
        run_distill(changed, tmp_path)


def test_recipe_settings_are_checked_before_any_work(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("seeds: molecules\nround: {selection: best}\n")
    with pytest.raises(MlffcError, match="selection must be one of"):
        DistillConfig.from_file(path)
    path.write_text("seeds: molecules\ntrain: {epoch: 3}\n")
    with pytest.raises(MlffcError, match="unknown train settings: epoch"):
        DistillConfig.from_file(path)
    path.write_text("- a list\n")
    with pytest.raises(MlffcError, match="mapping"):
        DistillConfig.from_file(path)
    with pytest.raises(MlffcError, match="md_interval"):
        RoundConfig(md_steps=10, md_interval=20)


def test_atomic_energy_labels_round_trip_and_sum_to_the_energy(small_data, tmp_path):
    frames = read_frames(small_data)
    assert frames.atomic_energy is not None
    sums = np.add.reduceat(frames.atomic_energy, frames.offsets[:-1])
    np.testing.assert_allclose(sums, frames.energy, rtol=0, atol=1e-8)
    write_frames(tmp_path / "copy.h5", frames)
    np.testing.assert_array_equal(read_frames(tmp_path / "copy.h5").atomic_energy, frames.atomic_energy)


def test_a_resumed_loop_sees_the_seeds_of_the_first_run(tmp_path):
    """The seeds file rounds positions (RDKit conformers have all their digits): the first run must
    use what a resumed run reads back."""
    from mlffc.data.generate import seeds_sha256
    from mlffc.trainers.loop import cached_seeds

    config = DistillConfig(seeds="fragments:4", workers=1)
    first = cached_seeds(config, ("H", "C", "N", "O"), tmp_path)
    again = cached_seeds(config, ("H", "C", "N", "O"), tmp_path)
    assert len(first) == 4 and seeds_sha256(first) == seeds_sha256(again)
    assert {a.info.get("family") for _, a in first} == {a.info.get("family") for _, a in again}
