"""remove_dead_code: drop nodes whose results nothing uses.

Needs: any graph module. After: the same outputs; no side-effect-free node without users.
make_fx records the whole autograd backward, including gradients nobody asks for (e.g. for
constant inputs), and tracing leaves detached copies; those cost time until removed.
"""

from __future__ import annotations

from torch.fx import GraphModule


def remove_dead_code(graph_module: GraphModule, settings) -> GraphModule:
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module
