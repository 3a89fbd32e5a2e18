import h5py
import numpy as np
import pytest

from mlffc.data.storage import FORMAT_VERSION, SHARD_NAME, Frames, read_dataset, read_frames, write_frames
from mlffc.errors import MlffcError


def _frames(rng, count=5):
    natoms = rng.integers(2, 9, count)
    n = int(natoms.sum())
    return Frames(
        natoms=natoms,
        numbers=rng.choice([1, 6, 7, 8], n).astype(np.uint8),
        positions=rng.normal(size=(n, 3)),
        cell=np.zeros((count, 3, 3)),
        pbc=np.zeros((count, 3), bool),
        energy=rng.normal(size=count),
        forces=rng.normal(size=(n, 3)),
        group=np.array([f"mol{k % 2}" for k in range(count)]),
        split=np.array([0, 1, 2, 0, 0][:count], np.uint8),
        sampler=np.array(["rattle0.1"] * count),
        energy_spread=rng.random(count),
        forces_spread=rng.random(n),
        attrs={"units": {"energy": "eV"}, "teacher": {"name": "test"}},
    )


def test_round_trip(tmp_path, rng):
    frames = _frames(rng)
    write_frames(tmp_path / "d.h5", frames)
    back = read_frames(tmp_path / "d.h5")
    for name in ("natoms", "numbers", "positions", "cell", "pbc", "energy", "forces", "split", "energy_spread", "forces_spread"):
        np.testing.assert_array_equal(getattr(back, name), getattr(frames, name))
    assert back.group.tolist() == frames.group.tolist()
    assert back.stress is None
    assert back.attrs == frames.attrs
    with h5py.File(tmp_path / "d.h5") as handle:
        assert handle.attrs["format_version"] == FORMAT_VERSION
        np.testing.assert_array_equal(handle["offsets"][()], frames.offsets)


def test_hessian_labels_round_trip(tmp_path, rng):
    frames = _frames(rng)
    frames.hessian_direction = np.full_like(frames.positions, np.nan)
    frames.hessian_product = np.full_like(frames.positions, np.nan)
    start, stop = frames.offsets[1], frames.offsets[2]
    frames.hessian_direction[start:stop] = rng.normal(size=(stop - start, 3))
    frames.hessian_product[start:stop] = rng.normal(size=(stop - start, 3))
    write_frames(tmp_path / "d.h5", frames)
    back = read_frames(tmp_path / "d.h5")
    np.testing.assert_array_equal(back.hessian_direction, frames.hessian_direction)  # NaN rows included
    np.testing.assert_array_equal(back.hessian_product, frames.hessian_product)


def test_shards_read_as_one_dataset(tmp_path, rng):
    parts = [_frames(rng, count=5), _frames(rng, count=4)]
    parts[0].split, parts[1].split = np.zeros(5, np.uint8), np.zeros(4, np.uint8)
    parts[1].group = np.array([f"mol{k + 2}" for k in range(4)])
    parts[1].attrs["shard"] = {"index": 1}
    for index, part in enumerate(parts):
        write_frames(tmp_path / "data" / SHARD_NAME.format(index=index, count=2), part)
    (tmp_path / "data" / ".shard-00001-of-00002.h5.x.tmp").write_bytes(b"unfinished")
    for path in (tmp_path / "data", tmp_path / "data" / "shard-*.h5"):
        frames = read_dataset(path)
        assert len(frames) == 9 and frames.natoms.tolist() == parts[0].natoms.tolist() + parts[1].natoms.tolist()
        np.testing.assert_array_equal(frames.forces, np.concatenate([p.forces for p in parts]))
        assert frames.attrs["files"] == ["shard-00000-of-00002.h5", "shard-00001-of-00002.h5"]
        assert "mol3" in frames.attrs["splits"]["train"] and "shard" not in frames.attrs
    assert len(read_dataset(tmp_path / "data" / "shard-00000-of-00002.h5")) == 5
    with pytest.raises(MlffcError, match="dataset not found"):
        read_dataset(tmp_path / "data" / "nothing-*.h5")


def test_shards_of_other_teachers_or_splits_are_refused(tmp_path, rng):
    first, second = _frames(rng), _frames(rng)
    first.split = second.split = np.zeros(5, np.uint8)
    second.attrs["teacher"] = {"name": "other"}
    write_frames(tmp_path / "a" / "1.h5", first)
    write_frames(tmp_path / "a" / "2.h5", second)
    with pytest.raises(MlffcError, match="another teacher"):
        read_dataset(tmp_path / "a")
    second.attrs["teacher"] = first.attrs["teacher"]
    second.split = np.ones(5, np.uint8)  # mol0 was train in the first shard
    write_frames(tmp_path / "b" / "1.h5", first)
    write_frames(tmp_path / "b" / "2.h5", second)
    with pytest.raises(MlffcError, match="groups in both train and val splits: mol0"):
        read_dataset(tmp_path / "b")


def test_select_and_atoms(rng):
    frames = _frames(rng)
    picked = frames.select([3, 1])
    assert picked.natoms.tolist() == [frames.natoms[3], frames.natoms[1]]
    np.testing.assert_array_equal(picked.atoms(0).positions, frames.atoms(3).positions)
    assert len(frames.split_named("val")) == 1


def test_missing_file(tmp_path):
    with pytest.raises(MlffcError, match="dataset not found"):
        read_frames(tmp_path / "none.h5")


def test_truncated_file(tmp_path, rng):
    write_frames(tmp_path / "d.h5", _frames(rng))
    data = (tmp_path / "d.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(MlffcError, match="corrupt or truncated"):
        read_frames(tmp_path / "t.h5")


def test_modified_content_fails_hash(tmp_path, rng):
    write_frames(tmp_path / "d.h5", _frames(rng))
    with h5py.File(tmp_path / "d.h5", "r+") as handle:
        handle["energy"][0] += 1.0
    with pytest.raises(MlffcError, match="content hash mismatch"):
        read_frames(tmp_path / "d.h5")


def test_foreign_hdf5(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["a"] = [1, 2]
    with pytest.raises(MlffcError, match="not an mlffc-dataset file"):
        read_frames(tmp_path / "x.h5")


def test_inconsistent_frames_are_refused(tmp_path, rng):
    frames = _frames(rng)
    frames.forces = None
    with pytest.raises(MlffcError, match="required array 'forces'"):
        write_frames(tmp_path / "d.h5", frames)
    frames = _frames(rng)
    frames.energy = frames.energy[:-1]
    with pytest.raises(MlffcError, match="'energy' has 4 rows, expected 5"):
        write_frames(tmp_path / "d.h5", frames)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_old_file_intact(tmp_path, rng, monkeypatch):
    write_frames(tmp_path / "d.h5", _frames(rng, count=3))
    original = h5py.Group.create_dataset

    def fail_on_forces(self, name, *args, **kwargs):
        if name == "forces":
            raise KeyboardInterrupt
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_forces)
    with pytest.raises(KeyboardInterrupt):
        write_frames(tmp_path / "d.h5", _frames(rng, count=5))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]
    assert len(read_frames(tmp_path / "d.h5")) == 3
