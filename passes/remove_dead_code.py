"""remove_dead_code: drop nodes whose results nothing uses.

Needs: any graph module (run on the joint graph, after differentiation). After: the same outputs;
no side-effect-free node without users, no unused constant. make_fx records the whole autograd
backward, including gradients nobody asks for, and tracing leaves detached copies; those cost
time until removed.
"""

from __future__ import annotations

from torch.fx import GraphModule

from mlffc.passes.core import EXACT, graph_pass


@graph_pass(budget=EXACT, stages=("energy", "joint"))
def remove_dead_code(graph_module: GraphModule, settings) -> GraphModule:
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name in [name for name, _ in graph_module.named_buffers() if name not in used]:
        delattr(graph_module, name)
    graph_module.recompile()
    return graph_module
