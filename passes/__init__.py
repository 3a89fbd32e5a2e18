"""Graph passes over a student's captured graphs (mapped to `mlffc.passes`).

Each pass lives in its own file named verb_noun, has the signature
`(graph_module, settings) -> graph_module`, and says in its docstring what it needs before it and
guarantees after it. The pass manager (manager.py) holds the ordered lists and runs them, each
checked against its error budget on a calibration set.
"""

from mlffc.passes.calibration import Calibration
from mlffc.passes.core import Budget, PassSettings
from mlffc.passes.manager import ENERGY_PASSES, JOINT_PASSES, PASSES, needs_custom_ops, run_passes

__all__ = ["Budget", "Calibration", "ENERGY_PASSES", "JOINT_PASSES", "PASSES", "PassSettings", "needs_custom_ops", "run_passes"]
