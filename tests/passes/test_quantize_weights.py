import torch

from passcheck import fresh, joint_of, max_difference, outputs

from mlffc.passes import PassSettings
from mlffc.passes.quantize_weights import quantize_weights


def test_weights_int8_forces_kept(moment, moment_energy, batches):
    after = quantize_weights(fresh(moment_energy), PassSettings())
    int8 = {name: b for name, b in after.named_buffers() if b.dtype == torch.int8}
    assert {"radial_weight_int8", "readout_0_weight_int8", "readout_4_weight_int8"} <= set(int8)
    assert all(b.abs().max() <= 127 for b in int8.values())
    reference = outputs(moment_energy, batches)
    difference = max_difference(outputs(after, batches), reference)
    largest_force = max(float(r[1].abs().max()) for r in reference)
    assert 0 < difference["forces"] < 0.1 * largest_force  # bounded; whether it fits the budget is the manager's call
    joint = joint_of(after, moment)  # weight-only: autograd goes through the dequantized weights
    assert any(b.dtype == torch.int8 for _, b in joint.named_buffers())
