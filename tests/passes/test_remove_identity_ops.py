import sys

from passcheck import fresh, max_difference, outputs

from mlffc.passes import PassSettings
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
