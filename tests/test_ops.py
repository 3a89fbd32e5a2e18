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


def _moments_reference(weights, basis, centre, n, orders):
    """edge_moments by its definition: per block, the plain sum or the flattened outer product, index_add."""
    c = weights.shape[1] // len(orders)
    blocks, column = [], 0
    for l, k in enumerate(orders):
        w = weights[:, l * c : (l + 1) * c]
        blocks.append(w if k == 0 else (w[:, :, None] * basis[:, None, column : column + k]).flatten(1))
        column += k
    per_edge = torch.cat(blocks, 1)
    return torch.zeros(n, per_edge.shape[1], dtype=weights.dtype).index_add(0, centre, per_edge)


def _sorted_centres(edges, atoms, without):
    """Centre indices sorted ascending, none of them in `without` (atoms with no edges)."""
    allowed = torch.tensor([a for a in range(atoms) if a not in without])
    return torch.sort(allowed[torch.randint(0, len(allowed), (edges,))])[0]


@pytest.mark.parametrize("channels, orders", [(3, [0, 3, 6]), (8, [0, 3, 6]), (2, [4, 0]), (16, [3])])
def test_edge_moments(channels, orders, mlffc):
    torch.manual_seed(0)
    atoms, edges = 9, 30
    centre = _sorted_centres(edges, atoms, without={0, 4, 8})  # the first, a middle and the last atom have no edges
    weights = torch.randn(edges, 2 * len(orders) * channels, dtype=torch.float64)[:, ::2].requires_grad_()  # strided rows
    basis = torch.randn(edges, sum(orders), dtype=torch.float64, requires_grad=True)
    expected = _moments_reference(weights, basis, centre, atoms, orders)
    moments = mlffc.edge_moments(weights, basis, centre, atoms, orders)
    torch.testing.assert_close(moments, expected)
    assert moments[[0, 4, 8]].abs().max() == 0
    assert torch.autograd.gradcheck(lambda w, b: mlffc.edge_moments(w, b, centre, atoms, orders), (weights, basis))
    # the backward op against autograd of the definition, float64 and the vectorised float32 path
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        w, b = weights.detach().to(dtype), basis.detach().to(dtype)
        grad = torch.randn(atoms, expected.shape[1], dtype=dtype)
        w_ref, b_ref = w.clone().requires_grad_(), b.clone().requires_grad_()
        reference = torch.autograd.grad(_moments_reference(w_ref, b_ref, centre, atoms, orders), (w_ref, b_ref), grad)
        for got, want in zip(mlffc.edge_moments_backward(grad, w, b, centre, orders), reference):
            torch.testing.assert_close(got, want, rtol=tolerance, atol=tolerance)


def test_edge_moments_split_over_threads(mlffc):
    """Receiver ranges split over threads (each finds its first edge) give the one-thread result."""
    torch.manual_seed(0)
    centre = _sorted_centres(3000, 400, without={0, 17, 399})
    weights, basis = torch.randn(3000, 48), torch.randn(3000, 9)
    grad = torch.randn(400, 160)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = [mlffc.edge_moments(weights, basis, centre, 400, [0, 3, 6]),
                  *mlffc.edge_moments_backward(grad, weights, basis, centre, [0, 3, 6])]
        torch.set_num_threads(4)
        split = [mlffc.edge_moments(weights, basis, centre, 400, [0, 3, 6]),
                 *mlffc.edge_moments_backward(grad, weights, basis, centre, [0, 3, 6])]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(single, split):
        assert torch.equal(a, b)


def test_edge_moments_without_edges(mlffc):
    weights, basis, centre = torch.zeros(0, 6), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    assert mlffc.edge_moments(weights, basis, centre, 4, [0, 3]).eq(0).all()
    grad_w, grad_b = mlffc.edge_moments_backward(torch.ones(4, 12), weights, basis, centre, [0, 3])
    assert grad_w.shape == (0, 6) and grad_b.shape == (0, 3)


def test_edge_moments_equal_the_students_moments(mlffc):
    """The op on a moment student's per-edge inputs gives its moments (the dense training form)."""
    from mlffc.data.clusters import molecular_cluster
    from mlffc.graph import build_graph, edge_vectors
    from mlffc.students import build_student
    from mlffc.students.base import symmetric_outer

    torch.manual_seed(0)
    student = build_student("moment", species=[1, 8], channels=8).eval()
    graph = build_graph([molecular_cluster("H2O", 6)], student.cutoff)
    vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    centre, j = graph.edge_index
    r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    u = vectors / r
    pair = ((student.basis(r) * student.envelope(r)).unsqueeze(2) * student.onehot[student.species_index[graph.species][j]].unsqueeze(1)).flatten(1)
    radial = student.radial(pair)[:, : 3 * student.channels].detach()
    n = graph.positions.shape[0]
    m0, m1, m2 = student._dense_moments(radial, u.unsqueeze(1), symmetric_outer(u).unsqueeze(1), centre, n)
    fused = mlffc.edge_moments(radial, torch.cat([u, symmetric_outer(u)], 1), centre, n, [0, 3, 6]) / student.avg_neighbours
    torch.testing.assert_close(fused, torch.cat([m0, m1.flatten(1), m2.flatten(1)], 1), rtol=1e-5, atol=1e-6)


def test_edge_moments_bad_input_is_refused(mlffc):
    weights, basis = torch.randn(4, 6), torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="edges must be sorted by centre"):
        mlffc.edge_moments(weights, basis, torch.tensor([0, 2, 1, 3]), 4, [0, 3])
    with pytest.raises(RuntimeError, match="edges must be sorted by centre"):
        mlffc.edge_moments_backward(torch.ones(4, 12), weights, basis, torch.tensor([1, 0, 0, 0]), [0, 3])
    with pytest.raises(RuntimeError, match="centre 4 out of range"):
        mlffc.edge_moments(weights, basis, torch.tensor([0, 1, 2, 4]), 4, [0, 3])
    with pytest.raises(RuntimeError, match="basis has 3 columns, the orders need 6"):
        mlffc.edge_moments(weights, basis, torch.arange(4), 4, [0, 6])
    with pytest.raises(RuntimeError, match="not a multiple of 4 blocks"):
        mlffc.edge_moments(weights, basis, torch.arange(4), 4, [0, 3, 0, 0])
