"""Graph passes over the captured energy+forces graph (mapped to `mlffc.passes`).

Each pass lives in its own file named verb_noun, has the signature
`(graph_module, settings) -> graph_module`, and says in its docstring what it needs before it
and guarantees after it. The pass manager runs them in the order a target lists them.
"""

from mlffc.passes.manager import PASSES, PassSettings, run_passes

__all__ = ["PASSES", "PassSettings", "run_passes"]
