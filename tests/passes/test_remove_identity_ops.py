import sys

import torch
from passcheck import fresh, max_difference, outputs
from torch.fx.experimental.proxy_tensor import make_fx

from mlffc.passes import PassSettings
from mlffc.passes.core import finish
from mlffc.passes.remove_identity_ops import remove_identity_ops


def _full_slices(graph_module):
    return [n for n in graph_module.graph.nodes if n.op == "call_function" and "slice" in str(n.target)
            and len(n.args) > 3 and n.args[2] == 0 and n.args[3] >= sys.maxsize]


def test_full_slices_go_and_results_stay(moment_energy, batches):
    assert _full_slices(moment_energy), "the traced graph should hold whole-dimension slices"
    after = remove_identity_ops(fresh(moment_energy), PassSettings())
    assert not _full_slices(after)
    assert len(after.graph.nodes) < len(moment_energy.graph.nodes)
    assert max_difference(outputs(after, batches), outputs(moment_energy, batches)) == {"energy_per_atom": 0.0, "forces": 0.0, "stress": 0.0}


def test_views_clones_copies_and_same_dtype_conversions_go():
    """Each identity the docstring names goes; a real reshape and a real dtype change stay."""

    def f(x):
        a = torch.ops.aten.view.default(x, x.shape)
        b = torch.ops.aten.reshape.default(a, x.shape)
        c = torch.ops.aten.expand.default(b, x.shape)
        d = torch.ops.aten.detach.default(torch.ops.aten.alias.default(torch.ops.aten.clone.default(c)))
        e = torch.ops.aten._to_copy.default(d, dtype=torch.float32)
        return torch.ops.aten._to_copy.default(torch.ops.aten.reshape.default(e, [-1]), dtype=torch.float64)

    graph_module = finish(make_fx(f, tracing_mode="symbolic")(torch.randn(5, 3)))  # reshape traces as view
    after = remove_identity_ops(fresh(graph_module), PassSettings())
    before_ops, after_ops = ([str(n.target) for n in g.graph.nodes if n.op == "call_function"] for g in (graph_module, after))
    identities = {"aten.expand.default", "aten.clone.default", "aten.alias.default", "aten.detach.default"}
    assert identities <= set(before_ops) and not identities & set(after_ops)
    assert (before_ops.count("aten.view.default"), after_ops.count("aten.view.default")) == (3, 1)  # the real reshape stays
    assert (before_ops.count("aten._to_copy.default"), after_ops.count("aten._to_copy.default")) == (2, 1)  # the real cast stays
    x = torch.randn(7, 3)
    assert torch.equal(after(x), graph_module(x))
