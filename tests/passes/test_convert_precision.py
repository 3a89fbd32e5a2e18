import pytest
import torch

from passcheck import fresh, max_difference, outputs

from mlffc.errors import MlffcError
from mlffc.passes import PassSettings
from mlffc.passes.convert_precision import BUDGETS, convert_precision


def _matmul_dtypes(graph_module):
    return [n.meta["val"].dtype for n in graph_module.graph.nodes if str(n.target) in ("aten.mm.default", "aten.addmm.default")]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_linear_layers_run_low_with_bounded_error(moment_energy, batches, precision):
    after = convert_precision(fresh(moment_energy), PassSettings(precision=precision))
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert set(_matmul_dtypes(after)) == {low}
    result = outputs(after, batches)
    assert all(r[0].dtype == torch.float64 for r in result)  # the energy output stays float64
    difference = max_difference(result, outputs(moment_energy, batches))
    assert 0 < difference["forces"] < BUDGETS[precision].forces
    assert difference["energy_per_atom"] < BUDGETS[precision].energy_per_atom


def test_per_layer_override_keeps_a_layer_in_fp32(moment_energy):
    after = convert_precision(fresh(moment_energy), PassSettings(precision="bf16", layers={"readout.4": "fp32"}))
    dtypes = _matmul_dtypes(after)
    assert torch.float32 in dtypes and torch.bfloat16 in dtypes


def test_fp32_accumulation(moment_energy, batches):
    after = convert_precision(fresh(moment_energy), PassSettings(accumulation="fp32"))
    float64 = [n for n in after.graph.nodes if n.op == "call_function" and getattr(n.meta["val"], "dtype", None) == torch.float64]
    assert len(float64) == 1  # only the final cast of the energy
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-5 and difference["forces"] < 1e-6


def test_tf32_needs_cuda(moment_energy):
    with pytest.raises(MlffcError, match="tf32 is a CUDA matmul mode"):
        convert_precision(fresh(moment_energy), PassSettings(precision="tf32"))


def test_unknown_precision_is_refused():
    with pytest.raises(MlffcError, match="unknown precision 'fp8'"):
        PassSettings(precision="fp8")
