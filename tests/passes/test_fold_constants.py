from passcheck import fresh, max_difference, outputs, targets

from mlffc.passes import PassSettings
from mlffc.passes.core import constant
from mlffc.passes.fold_constants import fold_constants


def test_constant_subgraphs_and_lookups_fold(moment_energy, batches):
    after = fold_constants(fresh(moment_energy), PassSettings())
    for node in after.graph.nodes:
        if node.op == "call_function" and node.all_input_nodes:
            assert not all(constant(after, n) is not None for n in node.all_input_nodes), node.format_node()
    assert targets(after).count("aten.t.default") == 0  # weight transposes are stored
    # one-hot and reference energies are looked up by atomic number directly
    assert any(name.startswith("onehot_by_species_index") for name, _ in after.named_buffers())
    assert any(name.startswith("atomic_reference_by_species_index") for name, _ in after.named_buffers())
    difference = max_difference(outputs(after, batches), outputs(moment_energy, batches))
    assert difference["energy_per_atom"] < 1e-6 and difference["forces"] < 1e-4  # stored transposes change the matmul's summation order
