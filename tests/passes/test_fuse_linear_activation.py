from passcheck import fresh, joint_of, max_difference, outputs, targets

from mlffc.passes import PassSettings
from mlffc.passes.fuse_linear_activation import fuse_linear_activation


def test_mlp_layers_become_linear_silu(moment, moment_energy, batches):
    after = fuse_linear_activation(fresh(moment_energy), PassSettings())
    assert targets(after).count("mlffc.linear_silu.default") == 2  # the readout's two hidden layers
    assert "aten.silu.default" not in targets(after)
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-6 and difference["forces"] < 1e-5
    joint = targets(joint_of(after, moment))
    assert joint.count("mlffc.linear_silu_backward.default") == 2 and "aten.silu_backward.default" not in joint
