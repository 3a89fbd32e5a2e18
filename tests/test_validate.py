"""`mlffc data validate`: a clean dataset passes; each check fires on a file crafted to break it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.build import molecule

from mlffc.data.storage import Frames, write_frames
from mlffc.data.validate import validate


def clean_frames(seed=0) -> Frames:
    """30 rattled frames of three molecules (10 each, one group each) with plausible labels."""
    rng = np.random.default_rng(seed)
    structures, groups = [], []
    for group, name, energy in (("g2/H2O", "H2O", -2080.0), ("g2/CH4", "CH4", -1100.0), ("g2/NH3", "NH3", -1535.0)):
        for _ in range(10):
            atoms = molecule(name)
            atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
            structures.append((atoms, energy + rng.normal(0, 0.05)))
            groups.append(group)
    natoms = np.array([len(a) for a, _ in structures])
    return Frames(
        natoms=natoms,
        numbers=np.concatenate([a.numbers for a, _ in structures]).astype(np.uint8),
        positions=np.concatenate([a.positions for a, _ in structures]),
        cell=np.zeros((len(natoms), 3, 3)),
        pbc=np.zeros((len(natoms), 3), bool),
        energy=np.array([e for _, e in structures]),
        forces=rng.normal(0, 1.0, (natoms.sum(), 3)),
        group=np.array(groups),
        split=np.array([{"g2/H2O": 0, "g2/CH4": 1, "g2/NH3": 2}[g] for g in groups], np.uint8),
        sampler=np.array(["rattle0.05"] * len(natoms)),
        energy_spread=rng.uniform(0.01, 0.02, len(natoms)),
        attrs={"teacher": {"name": "ani1x", "elements": ["H", "C", "N", "O"]}},
    )


def levels(frames):
    return {f.check: f.level for f in validate(frames).findings}


def test_clean_data_passes():
    report = validate(clean_frames())
    assert not report.errors, report.findings
    assert report.summary["frames"] == 30 and report.summary["size histogram"]["1-10"] == 30


def _broken(kind):
    frames = clean_frames()
    off = frames.offsets
    if kind == "finite values":
        frames.forces[3, 1] = np.nan
    elif kind == "interatomic distances":
        frames.positions[off[4] + 1] = frames.positions[off[4]] + [0.3, 0, 0]
    elif kind == "energy outliers":
        frames.energy[5] += 50.0
    elif kind == "force outliers":
        frames.forces[7] = [1e4, 0, 0]
    elif kind == "duplicates":
        frames.positions[off[2] : off[3]] = frames.positions[off[1] : off[2]] + [1.0, 2.0, 3.0]  # moved copy
    elif kind == "elements vs teacher":
        frames.numbers[0] = 17  # Cl
    elif kind == "splits":
        frames.split[0] = 2
    elif kind == "units of positions":
        frames.positions *= 100.0  # positions in the wrong units: molecules 100x too large
    elif kind == "densities":
        frames.pbc[:] = True
        frames.cell[:] = np.eye(3) * 30.0  # a molecule in 27,000 Å³: 0.001 g/cm³
    return frames


@pytest.mark.parametrize("kind", ["finite values", "interatomic distances", "energy outliers", "force outliers",
                                  "duplicates", "elements vs teacher", "splits", "units of positions", "densities"])
def test_each_check_fires(kind):
    found = levels(_broken(kind))
    assert found[kind] == "error", found
    assert [check for check, level in found.items() if level == "error"] == [kind]


def test_a_plausible_statistical_force_outlier_is_a_warning():
    frames = clean_frames()
    typical = np.median(np.linalg.norm(frames.forces, axis=1))
    frames.forces[7] *= 60.0 / np.linalg.norm(frames.forces[7])  # far past 5 robust sigmas, below 100 eV/Å
    assert typical < 10 and levels(frames)["force outliers"] == "warning"


@pytest.mark.parametrize("scale", [1.8897, 10.0])
def test_positions_in_bohr_or_scaled_are_flagged(scale):
    frames = clean_frames()
    frames.positions *= scale
    assert levels(frames)["units of positions"] == "error"


def test_water_box_density_and_bonds_are_plausible():
    from mlffc.data.clusters import molecular_cluster

    box = molecular_cluster("H2O", 27, periodic=True)
    from mlffc.data.validate import _bond_ratio, _densities

    single = Frames(natoms=np.array([len(box)]), numbers=box.numbers.astype(np.uint8), positions=box.positions,
                    cell=box.cell.array[None], pbc=np.ones((1, 3), bool), energy=np.zeros(1),
                    forces=np.zeros((len(box), 3)), group=np.array(["box"]), split=np.zeros(1, np.uint8),
                    sampler=np.array(["box"]), attrs={})
    assert 0.8 < _bond_ratio(single, 0) < 1.3
    assert 0.8 < _densities(single)[0] < 1.2


def test_missing_teacher_element_is_a_warning():
    frames = clean_frames()
    frames.attrs["teacher"]["elements"] = ["H", "C", "N", "O", "F"]
    assert levels(frames)["teacher coverage"] == "warning"


def run(path, *extra):
    return subprocess.run([sys.executable, "-m", "mlffc", "data", "validate", path, *extra], capture_output=True, text=True)


def test_command_exits_1_on_errors_and_writes_the_plot(tmp_path):
    write_frames(tmp_path / "good.h5", clean_frames())
    write_frames(tmp_path / "bad.h5", _broken("energy outliers"))
    good = run(tmp_path / "good.h5", "--plot", tmp_path / "v.png", "--json", tmp_path / "v.json")
    assert good.returncode == 0 and "PASSED" in good.stdout, good.stdout + good.stderr
    assert (tmp_path / "v.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "v.json").read_text())["summary"]["frames"] == 30
    bad = run(tmp_path / "bad.h5")
    assert bad.returncode == 1 and "energy outliers" in bad.stdout and "FAILED" in bad.stdout
    (tmp_path / "cut.h5").write_bytes((tmp_path / "good.h5").read_bytes()[:2000])
    cut = run(tmp_path / "cut.h5")
    assert cut.returncode == 2 and "corrupt or truncated" in cut.stderr and "Traceback" not in cut.stderr
