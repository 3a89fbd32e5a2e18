"""Apache TVM (Relax): the exported graph imported by TVM's torch frontend, scheduled for the
host CPU (LLVM with the detected -mcpu) or a CUDA GPU, and built into one shared library.

The frontend lacks a converter for `silu_backward` (the required pass decompose_silu_backward
removes it) and converts `index_put` with a single index into a [N, W] tensor (index_add, the
backward of gathers) only for as many index tensors as dimensions: `_converters` maps it to a
two-index index_put (rows x columns). TVM's default CPU pipeline leaves every loop nest
unscheduled (serial, scalar); `LoopNests` vectorises (and, for several threads, parallelises)
them (see its docstring). Meta-schedule tuning needs static shapes; these graphs' sizes are dynamic.
"""

from __future__ import annotations

from pathlib import Path

from torch.export import ExportedProgram

from mlffc.errors import MlffcError
from mlffc.targets.backends.base import Backend, Payload

PAYLOAD = "model.so"


class Tvm(Backend):
    name = "tvm"
    package = "apache-tvm"
    requires = (("apache-tvm", "tvm"),)
    devices = ("cpu", "cuda")
    required_passes = ("decompose_silu_backward",)

    def lower(self, exported: ExportedProgram, target, out_dir: Path) -> Payload:
        import tvm
        from tvm.relax.frontend.torch import from_exported_program

        try:
            module = from_exported_program(exported, custom_convert_map=_converters())
        except Exception as exc:  # the frontend raises many types; name the step that failed
            raise MlffcError(f"TVM could not import the joint graph: {exc}") from exc
        tvm_target = tvm_target_for(target)
        executable = tvm.compile(module, tvm_target, relax_pipeline=_pipeline(tvm_target))
        path = out_dir / PAYLOAD
        executable.export_library(str(path))
        return Payload(path, facts={"tvm_target": str(tvm_target)})


def tvm_target_for(target):
    """LLVM for this CPU (its -mcpu and thread count), or CUDA for the target's architecture."""
    import tvm
    from tvm.target.codegen import llvm_get_system_cpu

    if target.device == "cuda":
        return tvm.target.Target({"kind": "cuda", "arch": target.arch}, host="llvm")
    return tvm.target.Target({"kind": "llvm", "mcpu": llvm_get_system_cpu(), "num-cores": target.threads})


def _pipeline(tvm_target):
    """TVM's Relax pipeline for the target. On CUDA the default one (it schedules with dlight's GPU
    rules); on CPU the default passes with the fused loop nests scheduled by `LoopNests` after
    legalisation and fusion (the default CPU pipeline schedules nothing)."""
    import tvm
    from tvm import relax
    from tvm.s_tir import dlight

    if tvm_target.kind.name != "llvm":
        return relax.pipeline.get_default_pipeline(tvm_target)
    from tvm.relax.backend.cpu_generic import pipeline

    @tvm.transform.module_pass(opt_level=0)
    def cpu_pipeline(module, context):
        with tvm_target:
            return tvm.transform.Sequential([
                *pipeline.library_dispatch_passes(tvm_target),
                *pipeline.legalize_passes(tvm_target),
                dlight.ApplyDefaultSchedule(LoopNests()),
                *pipeline.dataflow_lower_passes(tvm_target),
                *pipeline.finalize_passes(tvm_target),
            ])(module)

    return cpu_pipeline


def _loop_nests_rule():
    """LoopNests, defined on first use (TVM is imported only when this backend runs)."""
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
    from tvm.s_tir.dlight.base.utils import get_extent
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class LoopNestsRule(CPUScheduleRule):
        """A generic CPU schedule for the fused loop nests of a joint graph: inline elementwise
        producers into their consumers; for a reduction, move the reduction loops outside the
        innermost static spatial loop and vectorise that loop (a matmul becomes a broadcast-FMA
        over output columns instead of a scalar dot product); vectorise the innermost static
        loop of elementwise nests; parallelise the outer loop when built for several threads."""

        def apply(self, func, target, tunable):
            if not self.is_target_available(target):
                return None
            sch = s_tir.Schedule(func)
            infos = try_inline_contiguous_spatial(sch, normalize_prim_func(sch))
            if infos is None:
                return None
            threads = int(target.attrs.get("num-cores", 1))
            for info in infos:
                try:
                    self._schedule(sch, info, threads)
                except Exception:  # noqa: BLE001 -- a primitive that does not apply ends this block's schedule; the steps before it (each a valid schedule) stay
                    continue
            return sch

        @staticmethod
        def _vectorize(sch, loop, lanes: int = 16) -> None:
            """Vectorise a static loop: whole if short, else by the widest of 16/8/4 lanes that
            divides it (a split with a remainder adds a predicate that blocks vectorisation);
            otherwise leave it to LLVM's loop vectoriser."""
            extent = get_extent(sch, loop)
            if not isinstance(extent, int):
                return
            if extent <= lanes:
                sch.vectorize(loop)
                return
            for width in (16, 8, 4):
                if extent % width == 0:
                    sch.vectorize(sch.split(loop, factors=[None, width])[1])
                    return

        @classmethod
        def _schedule(cls, sch, info, threads):
            loops, kinds = sch.get_loops(info.block_rv), info.dom_kind()
            if len(loops) != len(kinds) or not loops:
                return
            if "R" in kinds and kinds[0] == "S":
                spatial = [i for i, k in enumerate(kinds) if k == "S"]
                inner = spatial[-1]
                if len(spatial) > 1 and isinstance(get_extent(sch, loops[inner]), int):
                    reductions = [loops[i] for i, k in enumerate(kinds) if k == "R"]
                    sch.reorder(*[loops[i] for i in spatial[:-1]], *reductions, loops[inner])
                    init = sch.decompose_reduction(info.block_rv, reductions[0])
                    cls._vectorize(sch, loops[inner])
                    cls._vectorize(sch, sch.get_loops(init)[-1])
            elif info.is_injective():
                cls._vectorize(sch, loops[-1])
            if threads > 1 and kinds[0] == "S":
                sch.parallel(loops[0])

    return LoopNestsRule


def LoopNests():  # noqa: N802 -- constructs the rule class above
    return _loop_nests_rule()()


def _converters() -> dict:
    """Converters the frontend lacks: index_put with one index tensor into a higher-rank tensor
    (index_add / scatter-add into per-atom rows, as autograd and index_add produce it)."""
    from tvm import relax

    def index_put(node, importer):
        args = importer.retrieve_args(node)
        data, indices, values = args[0], args[1], args[2]
        accumulate = args[3] if len(args) > 3 else node.kwargs.get("accumulate", False)
        if len(indices) != 1 or indices[0] is None or len(node.args[0].meta["val"].shape) == 1:
            return importer._index_put(node)
        builder, width = importer.block_builder, node.args[0].meta["val"].shape[1]
        if not isinstance(width, int):
            return importer._index_put(node)
        # index rows [E, 1] and columns [1, W] broadcast to the values' [E, W] (relax scatter_nd is ~100x slower)
        rows = builder.emit(relax.op.expand_dims(indices[0], axis=1))
        columns = builder.emit(relax.op.reshape(relax.op.arange(0, width, 1, "int64"), (1, width)))
        return builder.emit(relax.op.index_put(data, relax.Tuple([rows, columns]), values, accumulate))

    return {"index_put.default": index_put, "index_put_.default": index_put}
