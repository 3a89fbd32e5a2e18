"""Sampling and labelling at scale: the teacher's exact Hessian, normal-mode samples at the
intended energy, packed boxes, ensemble-driven selection, duplicates, Hessian-vector labels,
and shards that come out the same in this process, after a kill, and on a Dask cluster."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase import units
from ase.build import molecule

from mlffc.data.clusters import MIN_GAP, packed_molecules
from mlffc.data.generate import add_hessian_labels, generate, label
from mlffc.data.sampling_config import SamplingConfig
from mlffc.data.samplers import normal_mode_samples, normal_modes, relax_molecules
from mlffc.data.select import duplicate_pairs, uncertain
from mlffc.data.seeds import first_groups, seed_molecules
from mlffc.data.storage import Frames, read_dataset

TINY = SamplingConfig(mutants_per_seed=0, rattles_per_scale=2, normal_modes_per_temperature=0, md_steps=0,
                      packed_systems=2, packed_atoms=(10, 40))
TINY_SEEDS = ("g2/H2O", "g2/CH4", "g2/NH3")


@pytest.fixture(scope="module")
def teacher():
    """ANI-1x of its own: FeNNol pads every call to the largest batch its instance has seen, and
    the session's teacher has labelled 4096-atom batches; these tests' calls are small."""
    from mlffc.teachers import load_teacher

    return load_teacher("ani1x")


def test_teacher_hessian_is_exact(teacher, rng):
    atoms = molecule("CH3OH")
    atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
    hessian, water = teacher.hessians([atoms, molecule("H2O")])
    assert hessian.shape == (18, 18) and water.shape == (9, 9)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-8)
    v = rng.normal(size=(len(atoms), 3))
    np.testing.assert_allclose(teacher.hessian_vector_products([atoms], v).ravel(), hessian @ v.ravel(), atol=1e-8)
    h = 1e-3  # ANI's CELU has a kink in its second derivative: finite differences agree to ~1%
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions += h * v
    minus.positions -= h * v
    finite = -(teacher.compute([plus]).forces - teacher.compute([minus]).forces).ravel() / (2 * h)
    assert np.abs(finite - hessian @ v.ravel()).max() < 0.02 * np.abs(finite).max()


def test_hessian_vector_labels(teacher, rng):
    structures = [("g2/H2O", "seed", molecule("H2O")), ("g2/H2O", "seed", molecule("H2O")),
                  ("g2/NH3", "seed", molecule("NH3"))]
    structures[1][2].positions += rng.normal(0, 0.05, (3, 3))
    frames = label(structures, teacher)
    add_hessian_labels(frames, teacher, per_group=1, seed=0)
    labelled = [k for k in range(3) if np.isfinite(frames.hessian_direction[frames.offsets[k]]).all()]
    assert len(labelled) == 2 and 2 in labelled
    hessians = teacher.hessians([frames.atoms(k) for k in labelled])
    for k in range(3):
        part = slice(frames.offsets[k], frames.offsets[k + 1])
        if k not in labelled:
            assert np.isnan(frames.hessian_direction[part]).all() and np.isnan(frames.hessian_product[part]).all()
            continue
        v = frames.hessian_direction[part]
        assert np.linalg.norm(v) == pytest.approx(1.0)
        np.testing.assert_allclose(frames.hessian_product[part].ravel(), hessians[labelled.index(k)] @ v.ravel(), atol=1e-8)


def test_packed_box_has_no_overlaps_at_the_density_asked(rng):
    pool = [atoms for group, atoms in seed_molecules() if group in ("g2/H2O", "g2/CH3OH", "g2/C6H6")]
    molecules = [pool[k % 3] for k in range(30)]
    box = packed_molecules(molecules, density=0.8, rng=rng, periodic=True)
    assert box.pbc.all() and len(box) == sum(len(m) for m in molecules)
    density = box.get_masses().sum() / box.get_volume() * 1.66053907
    assert 0.7 < density <= 0.8 + 1e-9
    owner = np.repeat(np.arange(len(molecules)), [len(m) for m in sorted(molecules, key=len, reverse=True)])
    distances = box.get_all_distances(mic=True)
    assert distances[owner[:, None] != owner[None, :]].min() >= MIN_GAP - 1e-9
    cluster = packed_molecules(molecules[:5], density=0.8, rng=rng, periodic=False)
    assert not cluster.pbc.any() and np.abs(cluster.positions.mean(axis=0)).max() < 1e-9


def test_a_molecule_larger_than_the_box_never_meets_its_own_image():
    """Two icosane chains (~14.5 Å long) at liquid density would want a ~11.6 Å box."""
    from mlffc.data.chemistry import molecule_from_smiles

    chain = molecule_from_smiles("C" * 20, None, seed=0)
    for seed in range(5):
        box = packed_molecules([chain, chain], density=0.8, rng=np.random.default_rng(seed), periodic=True)
        inside = box.get_all_distances(mic=True)[np.triu_indices(len(box), 1)]
        assert inside.min() > 0.9  # C-H bonds; an atom meeting its own molecule's image comes far closer


def test_selection_keeps_disagreement_and_drops_duplicates(teacher, rng):
    water = molecule("H2O")
    frames_in = [("g2/H2O", "seed", water)] + [("g2/H2O", "rattle0.1", water.copy()) for _ in range(9)]
    for _, _, atoms in frames_in[1:]:
        atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    moved = water.copy()
    moved.rotate(40, "z")
    moved.translate([1.0, 2.0, 3.0])
    frames = label(frames_in + [("g2/H2O", "rattle0.1", moved)], teacher)
    assert duplicate_pairs(frames, 0.005) == [(0, 10)]
    keep = uncertain(frames, 0.5)
    spread = frames.energy_spread
    assert keep[0] and keep.sum() in (5, 6, 7)
    assert spread[keep & (frames.sampler != "seed")].min() >= spread[~keep].max()


def _tiny_seeds():
    return [s for s in seed_molecules() if s[0] in TINY_SEEDS]


def test_a_shard_is_the_same_every_time(teacher):
    first = generate(_tiny_seeds(), teacher, TINY, shard=1, shards=2)
    again = generate(_tiny_seeds(), teacher, TINY, shard=1, shards=2)
    other = generate(_tiny_seeds(), teacher, TINY, shard=0, shards=2)
    np.testing.assert_allclose(first.positions, again.positions, atol=1e-9)
    np.testing.assert_allclose(first.forces, again.forces, atol=1e-7)
    assert not set(first.group.tolist()) & set(other.group.tolist())
    assert {s.split("/")[0] for s in first.group.tolist() + other.group.tolist()} == {"g2", "packed"}


def _assert_same_labels(a, b):
    assert a.group.tolist() == b.group.tolist() and a.sampler.tolist() == b.sampler.tolist()
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
    np.testing.assert_allclose(a.energy, b.energy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-6)
    np.testing.assert_array_equal(a.split, b.split)


@pytest.mark.slow
def test_dask_cluster_gives_the_labels_of_the_local_path(tmp_path):
    from distributed import Client, LocalCluster

    from mlffc.data.shards import ShardJob, TeacherSpec, run_shards

    local = ShardJob(TeacherSpec("ani1x"), _tiny_seeds(), TINY, (0.1, 0.1), 2, tmp_path / "local")
    run_shards(local, [0, 1])
    remote = ShardJob(TeacherSpec("ani1x"), _tiny_seeds(), TINY, (0.1, 0.1), 2, tmp_path / "dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        summaries = run_shards(remote, [0, 1], executor=client.get_executor(pure=False))
    assert [s["index"] for s in summaries] == [0, 1]
    _assert_same_labels(read_dataset(tmp_path / "local"), read_dataset(tmp_path / "dask"))


GENERATE = ["generate", "--limit", 3, "--mutants-per-seed", 0, "--normal-modes", 0, "--md-steps", 0, "--packed", 0,
            "--rattles-per-scale", 2, "--shards", 3]


@pytest.mark.slow
def test_resume_after_a_kill_redoes_only_unfinished_shards(tmp_path, teacher):
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "mlffc", *map(str, GENERATE), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "shard-00000-of-00003.h5"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists()
    finished = {p.name: p.read_bytes() for p in out.glob("shard-*.h5")}
    (out / ".shard-00002-of-00003.h5.abc123.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"skipping {len(finished)} finished shard(s)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"shard-0000{k}-of-00003.h5" for k in range(3)]
    for name, content in finished.items():
        assert (out / name).read_bytes() == content, f"{name} was rewritten"
    config = SamplingConfig(mutants_per_seed=0, rattles_per_scale=2, normal_modes_per_temperature=0, md_steps=0,
                            packed_systems=0)
    expected = [generate(first_groups(seed_molecules(), 3), teacher, config, shard=k, shards=3) for k in range(3)]
    _assert_same_labels(read_dataset(out), Frames.concatenate(expected))  # no frame lost, doubled or corrupt
    rerun = subprocess.run([*command[:-2], "--out", str(out), "--rattles-per-scale", "3"], capture_output=True, text=True)
    assert rerun.returncode == 2 and "other sampler settings" in rerun.stderr


def test_normal_mode_samples_have_the_intended_energy_scale(teacher):
    """Each sampled mode holds kT/2 on average: harmonically exactly, and the teacher agrees at
    100 K, where anharmonicity is small."""
    (minimum,) = relax_molecules([molecule("CH3OH")], teacher, fmax=0.005, steps=300)
    (hessian,) = teacher.hessians([minimum])
    w2, modes = normal_modes(minimum, hessian)
    assert len(w2) == 3 * len(minimum) - 6 and w2.min() > 0
    temperature, count = 100.0, 300
    samples = normal_mode_samples(minimum, hessian, temperature, count, np.random.default_rng(0))
    displacements = np.stack([s.positions - minimum.positions for s in samples]).reshape(count, -1)
    harmonic = 0.5 * np.einsum("si,ij,sj->s", displacements, hessian, displacements)
    expected = 0.5 * len(w2) * units.kB * temperature
    assert harmonic.mean() == pytest.approx(expected, rel=0.08)
    reference = teacher.compute([minimum]).energy[0]
    assert (teacher.compute(samples).energy - reference).mean() == pytest.approx(expected, rel=0.15)


def test_sampling_takes_hessians_in_the_teachers_own_precision(teacher):
    """ANI's float32 second derivatives came out NaN for some relaxed molecules (propene, an
    indole-benzene stack): trajectories may run on the float32 sampler, Hessians may not, and a
    NaN Hessian is never eigensolved."""
    from mlffc.errors import MlffcError

    class NanHessians:  # a sampler whose second derivatives are garbage
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def hessians(self, structures):
            return [np.full((3 * len(a), 3 * len(a)), np.nan) for a in structures]

    class Precise(NanHessians):  # the teacher itself: exact Hessians, a NaN-Hessian sampler
        def hessians(self, structures):
            return self.inner.hessians(structures)

        def sampler(self):
            return NanHessians(self.inner)

    seeds = [(g, a) for g, a in seed_molecules() if g == "g2/C3H6_Cs"]
    config = SamplingConfig(mutants_per_seed=0, rattles_per_scale=0, normal_modes_per_temperature=2, md_steps=0,
                            packed_systems=0, spread_quantile=0.0)
    frames = generate(seeds, Precise(teacher), config, holdout=(0.0, 0.0))
    assert sum(s.startswith("nm") for s in frames.sampler.tolist()) == 2 * len(config.normal_mode_temperatures)
    with pytest.raises(MlffcError, match="Hessian of C3H6 has non-finite"):
        normal_modes(seeds[0][1], np.full((27, 27), np.nan))
