import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from scipy.spatial.transform import Rotation

from mlffc.errors import MlffcError
from mlffc.graph import build_graph
from mlffc.students import STUDENTS, build_student, load_student, save_student


@pytest.fixture(params=sorted(STUDENTS))
def student(request):
    torch.manual_seed(0)
    model = build_student(request.param, species=[1, 6, 7, 8]).double()
    model.atomic_reference.copy_(torch.tensor([-13.6, -1029.0, -1485.0, -2041.0], dtype=torch.float64))
    model.energy_scale.fill_(20.0)  # forces of order 0.1-1 eV/Å, as after training
    return model.eval()


def _inputs(structures, cutoff):
    """Graph inputs in float64 (positions and cells taken from ASE, not rounded through float32)."""
    g = build_graph(structures, cutoff)
    positions = torch.from_numpy(np.concatenate([a.positions for a in structures]))
    cells = torch.from_numpy(np.stack([a.cell.array if a.pbc.all() else np.zeros((3, 3)) for a in structures]))
    return [positions, g.species, g.edge_index, g.shifts.double(), cells, g.batch]


def test_forces_match_finite_differences(student, rng):
    atoms = molecule("CH3CONH2")
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    inputs = _inputs([atoms], student.cutoff)
    _, forces, _ = student(*inputs)
    h = 1e-4  # energies are ~5e3 eV: float64 rounding limits smaller steps
    for atom, axis in [(0, 0), (3, 1), (8, 2)]:
        plus, minus = inputs[0].clone(), inputs[0].clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        derivative = (student(plus, *inputs[1:])[0] - student(minus, *inputs[1:])[0]).item() / (2 * h)
        assert forces[atom, axis].item() == pytest.approx(-derivative, rel=1e-5, abs=1e-7)


def test_stress_matches_finite_strain(student, rng):
    atoms = bulk("C", "diamond", a=3.6, cubic=True)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    _, _, stress = student(*_inputs([atoms], student.cutoff))
    h = 1e-4  # central differences: O(h^2) error above, float64 rounding of ~8e3 eV totals below
    for a, b in [(0, 0), (1, 2)]:
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            strain = np.eye(3)
            strain[a, b] += sign * h
            strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(student(*_inputs([strained], student.cutoff))[0].item())
        expected = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
        assert stress[0, a, b].item() == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_invariance_and_equivariance(student, rng):
    atoms = molecule("C6H6")
    energy, forces, _ = student(*_inputs([atoms], student.cutoff))
    rotation = Rotation.random(random_state=1)
    moved = atoms.copy()
    moved.positions = rotation.apply(atoms.positions) + [1.0, -2.0, 0.5]
    permutation = rng.permutation(len(atoms))
    moved = moved[permutation]
    energy2, forces2, _ = student(*_inputs([moved], student.cutoff))
    assert energy2.item() == pytest.approx(energy.item(), rel=1e-12)
    np.testing.assert_allclose(forces2.detach().numpy(), rotation.apply(forces.detach().numpy())[permutation], atol=1e-10)


def test_batch_equals_single(student):
    structures = [molecule("H2O"), molecule("CH4"), molecule("HCN")]
    energy, forces, _ = student(*_inputs(structures, student.cutoff))
    for k, atoms in enumerate(structures):
        single, _, _ = student(*_inputs([atoms], student.cutoff))
        assert energy[k].item() == pytest.approx(single.item(), rel=1e-12)


def test_checkpoint_round_trip(student, tmp_path):
    student = student.float()
    save_student(student, tmp_path / "s.safetensors", extra={"note": "x"})
    loaded, extra = load_student(tmp_path / "s.safetensors")
    assert extra == {"note": "x"}
    assert loaded.config() == student.config()
    g = build_graph([molecule("CH3OH"), molecule("C2H4")], student.cutoff)
    for a, b in zip(student(*g.inputs()), loaded(*g.inputs())):
        assert torch.equal(a, b)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(MlffcError, match="student checkpoint not found"):
        load_student(tmp_path / "none.safetensors")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(MlffcError, match="not a readable safetensors checkpoint"):
        load_student(tmp_path / "x.safetensors")


@pytest.mark.parametrize("config", [{}, {"products": 8}])
def test_training_form_equals_the_captured_form(config, rng):
    """The moment student trains on per-atom neighbour blocks and is captured (eval) on the edge
    list: both must give the same energies, forces and stress, periodic cells included."""
    torch.manual_seed(0)
    student = build_student("moment", species=[1, 6, 7, 8], channels=8, hidden=[16], **config).double()
    box = bulk("C", "diamond", a=3.6, cubic=True)
    box.positions += rng.normal(0, 0.05, box.positions.shape)
    structures = [molecule("CH3CONH2"), box, molecule("H2O")]
    inputs = _inputs(structures, student.cutoff)
    eval_outputs = student.eval()(*inputs)
    train_outputs = student.train()(*inputs)
    for a, b in zip(eval_outputs, train_outputs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_products_student_is_invariant_and_learns_through_forces(rng):
    torch.manual_seed(0)
    student = build_student("moment", species=[1, 6, 7, 8], channels=8, hidden=[16], products=12).double().train()
    atoms = molecule("CH3CH2OH")
    turned = atoms.copy()
    turned.rotate(37, (1, 2, 3))
    energy, forces, _ = student(*_inputs([atoms], student.cutoff))
    energy_turned, forces_turned, _ = student(*_inputs([turned], student.cutoff))
    torch.testing.assert_close(energy, energy_turned)
    rotation = Rotation.from_rotvec(np.deg2rad(37) * np.array([1, 2, 3]) / np.linalg.norm([1, 2, 3])).as_matrix()
    torch.testing.assert_close(forces_turned, forces @ torch.from_numpy(rotation).T)
    forces.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.mixes.parameters())
