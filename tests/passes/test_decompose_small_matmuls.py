from passcheck import fresh, max_difference, outputs, targets

from mlffc.passes import PassSettings
from mlffc.passes.decompose_small_matmuls import decompose_small_matmuls


def test_invariant_einsums_become_elementwise(moment_energy, batches):
    assert "aten.bmm.default" in targets(moment_energy)
    after = decompose_small_matmuls(fresh(moment_energy), PassSettings())
    assert "aten.bmm.default" not in targets(after)
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-6 and difference["forces"] < 1e-5
