from passcheck import fresh, joint_of, max_difference, outputs, targets

from mlffc.passes import PassSettings
from mlffc.passes.fuse_radial_linear import fuse_radial_linear


def test_first_linear_becomes_species_linear(moment, moment_energy, batches):
    after = fuse_radial_linear(fresh(moment_energy), PassSettings())
    assert targets(after).count("mlffc.species_linear.default") == 1
    assert "aten.mm.default" not in [t for t in targets(after)][:len(targets(after)) // 3]  # the radial mm is gone
    per_species = [b for name, b in after.named_buffers() if name.endswith("_per_species")]
    assert per_species and per_species[0].shape == (4, moment.num_basis, 3 * moment.channels * moment.interactions)
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-6 and difference["forces"] < 1e-5
    assert "mlffc.species_linear_backward.default" in targets(joint_of(after, moment))
