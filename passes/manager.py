"""The pass manager: the ordered pass lists and the checked run of a stage's passes over a graph
(the compiler traces and differentiates the student around the two stages: compiler.optimize).

Passes run in two stages (as torch-tensorrt's pre- and post-lowering lists): ENERGY_PASSES rewrite
the energy graph before it is differentiated, so fused ops contribute their own backward ops and
a layer's precision applies to its backward too; JOINT_PASSES clean up the joint graph of energy,
forces and stress. A target names the passes it wants; they always run in the order listed here.

With a calibration set, every pass is checked: the graph after it is compared with the graph
before it (and with the unmodified student, and the teacher where labels exist) and timed; a pass
whose change exceeds its budget is rejected -- the graph before it goes on -- and reported.
"""

from __future__ import annotations

import time
from typing import Sequence

from torch.fx import GraphModule

from mlffc.errors import MlffcError
from mlffc.graph import energy_forces_stress
from mlffc.passes.calibration import Calibration
from mlffc.passes.convert_precision import convert_precision
from mlffc.passes.core import Pass, PassSettings, budget_of, copy_graph_module
from mlffc.passes.decompose_silu_backward import decompose_silu_backward
from mlffc.passes.decompose_small_matmuls import decompose_small_matmuls
from mlffc.passes.eliminate_common_subexpressions import eliminate_common_subexpressions
from mlffc.passes.fold_constants import fold_constants
from mlffc.passes.fuse_edge_moments import fuse_edge_moments
from mlffc.passes.fuse_edge_scatter import fuse_edge_scatter
from mlffc.passes.fuse_linear_activation import fuse_linear_activation
from mlffc.passes.fuse_radial_linear import fuse_radial_linear
from mlffc.passes.lower_broadcasts_to_matmuls import lower_broadcasts_to_matmuls
from mlffc.passes.quantize_weights import quantize_weights
from mlffc.passes.remove_dead_code import remove_dead_code
from mlffc.passes.remove_identity_ops import remove_identity_ops

ENERGY_PASSES: tuple[Pass, ...] = (
    remove_identity_ops,
    fuse_radial_linear,
    fuse_linear_activation,
    fuse_edge_moments,
    fuse_edge_scatter,
    decompose_small_matmuls,
    fold_constants,
    convert_precision,
    quantize_weights,
)
JOINT_PASSES: tuple[Pass, ...] = (decompose_silu_backward, lower_broadcasts_to_matmuls, eliminate_common_subexpressions, remove_dead_code)
PASSES: dict[str, Pass] = {p.__name__: p for p in (*ENERGY_PASSES, *JOINT_PASSES)}


def ordering_violations(stages: dict[str, Sequence[Pass]] | None = None) -> list[str]:
    """Where the stage lists (default: the manager's) break what a pass declares (`@graph_pass`):
    a pass in a stage it does not run in, or after a pass it must precede; empty when none."""
    stages = {"energy": ENERGY_PASSES, "joint": JOINT_PASSES} if stages is None else stages
    order = [(stage, p.__name__) for stage, passes in stages.items() for p in passes]
    position = {name: k for k, (_, name) in enumerate(order)}
    problems = []
    for stage, passes in stages.items():
        for graph_pass in passes:
            name = graph_pass.__name__
            if stage not in graph_pass.stages:
                problems.append(f"{name} is listed in the {stage} stage; it runs in {', '.join(graph_pass.stages)}")
            problems += [f"{name} must run after {a}" for a in graph_pass.after if a in position and position[a] > position[name]]
            problems += [f"{name} must run before {b}" for b in graph_pass.before if b in position and position[b] < position[name]]
    return problems


def check_pass_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise MlffcError(f"unknown pass {', '.join(repr(n) for n in unknown)}; available: {', '.join(PASSES)}")


def needs_custom_ops(names: Sequence[str]) -> list[str]:
    """The passes among `names` whose graphs call the mlffc op library."""
    check_pass_names(names)
    return [n for n in names if PASSES[n].custom_ops]


def run_passes(graph_module: GraphModule, names: Sequence[str], settings: PassSettings, stage: str = "joint",
               calibration: Calibration | None = None, reference=None) -> tuple[GraphModule, list[dict]]:
    """Run the passes of `stage` ("energy" or "joint") named in `names`, in the manager's order.
    With a calibration set each is checked against its budget (reference: the unmodified
    student's calibration outputs); returns the graph and one record per pass."""
    check_pass_names(names)
    stage_passes = {"energy": ENERGY_PASSES, "joint": JOINT_PASSES}[stage]
    evaluate = _energy_evaluator if stage == "energy" else _joint_evaluator
    if calibration is not None:
        outputs, ms = calibration.run(evaluate(graph_module)), calibration.time_ms(evaluate(graph_module))
    records = []
    for graph_pass in [p for p in stage_passes if p.__name__ in names]:
        started = time.perf_counter()
        candidate = graph_pass(copy_graph_module(graph_module), settings)
        record = {"name": graph_pass.__name__, "stage": stage, "seconds": round(time.perf_counter() - started, 3), "applied": True}
        if calibration is not None:
            new_outputs, new_ms = calibration.run(evaluate(candidate)), calibration.time_ms(evaluate(candidate))
            error = calibration.difference(new_outputs, outputs)
            teacher = calibration.teacher_force_mae(new_outputs)
            if teacher is not None:
                error["teacher_force_mae"] = teacher - calibration.teacher_force_mae(outputs)
            budget = budget_of(graph_pass, settings)
            over = budget.exceeded_by(error)
            record.update({
                "error": error,
                "budget": vars(budget),
                "vs_student": calibration.difference(new_outputs, reference) if reference is not None else None,
                "teacher_force_mae": teacher,
                "graph_ms": {"before": ms, "after": new_ms},
            })
            if over:
                record.update(applied=False, rejected="over budget: " + "; ".join(over))
                records.append(record)
                continue
            outputs, ms = new_outputs, new_ms
        graph_module = candidate
        records.append(record)
    return graph_module, records


def _energy_evaluator(graph_module: GraphModule):
    return lambda graph: energy_forces_stress(graph_module, *graph.inputs())


def _joint_evaluator(graph_module: GraphModule):
    return lambda graph: graph_module(*graph.inputs())
