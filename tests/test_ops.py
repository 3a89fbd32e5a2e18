"""The fused C++ ops against their reference definitions: values, gradients (their backward ops),
strided inputs, and clear errors for bad input."""

import pytest
import torch

from mlffc import ops



@pytest.fixture(scope="module")
def mlffc():
    """The op library, built (or taken from the cache) when a test first needs it, not at collection."""
    ops.load()
    return torch.ops.mlffc


def _scatter_reference(a, b, index, n):
    return torch.zeros(n, a.shape[1] * b.shape[1], dtype=a.dtype).index_add(0, index, (a[:, :, None] * b[:, None, :]).flatten(1))


@pytest.mark.parametrize("k", [1, 3, 5, 6])
def test_scatter_outer(k, mlffc):
    torch.manual_seed(0)
    a = torch.randn(40, 3 * 7, dtype=torch.float64)[:, 7:14].requires_grad_()  # a strided slice, as in the graphs
    b = torch.randn(40, k, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 9, (40,))
    torch.testing.assert_close(mlffc.scatter_outer(a, b, index, 9), _scatter_reference(a, b, index, 9))
    assert torch.autograd.gradcheck(lambda a, b: mlffc.scatter_outer(a, b, index, 9), (a, b))


def test_species_linear(mlffc):
    torch.manual_seed(0)
    x = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    species, weight = torch.randint(0, 4, (30,)), torch.randn(4, 8, 5, dtype=torch.float64)
    expected = torch.bmm(x[:, None, :], weight[species]).squeeze(1)
    torch.testing.assert_close(mlffc.species_linear(x, species, weight), expected)
    assert torch.autograd.gradcheck(lambda x: mlffc.species_linear(x, species, weight), (x,))
    x32, weight32 = x.detach().float().requires_grad_(), weight.float()  # the vectorised float path
    (grad,) = torch.autograd.grad(mlffc.species_linear(x32, species, weight32).sum(), x32)
    torch.testing.assert_close(grad, weight32[species].sum(-1))


def test_linear_silu(mlffc):
    torch.manual_seed(0)
    x = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    y, h = mlffc.linear_silu(x, weight, bias)
    torch.testing.assert_close(h, x @ weight.T + bias)
    torch.testing.assert_close(y, torch.nn.functional.silu(h))
    assert torch.autograd.gradcheck(lambda x: mlffc.linear_silu(x, weight, bias)[0], (x,))


def test_bad_input_is_refused(mlffc):
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    with pytest.raises(RuntimeError, match="out of range"):
        mlffc.scatter_outer(a, b, torch.tensor([0, 1, 2, 3, 9]), 4)
    with pytest.raises(RuntimeError, match="b has 4 rows, expected 5"):
        mlffc.scatter_outer(a, torch.randn(4, 3), torch.zeros(5, dtype=torch.long), 4)
    with pytest.raises(RuntimeError, match="species index 7 out of range"):
        mlffc.species_linear(torch.randn(2, 8), torch.tensor([0, 7]), torch.randn(4, 8, 3))
