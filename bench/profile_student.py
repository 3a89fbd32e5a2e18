"""Profile of the default student at ~300 atoms, 1 thread: eager time per op class (forward and
backward of energy + forces), achieved FLOP/s and bytes/s, the neighbour list, and the compiled
AOTInductor artifact (`mlffc compile`'s pipeline, cpu target, default passes) in the same run.

    .venv/bin/python bench/profile_student.py [--student ani1x-moment] [--waters 100] [--rounds 20]

Forward op classes are the student's own modules and methods, timed as profiler ranges
(edge geometry and species-pair construction are what `features` does outside them); backward
is grouped by autograd node. FLOPs are the profiler's counts (matmuls and elementwise ops it
knows); bytes are the sizes of every aten op's input tensors (a lower bound on traffic). Writes
bench/out/profile/profile.md and .json; `uptime` is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from mlffc.compiler import compile_student, resolve_target
from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph
from mlffc.runtime import load
from mlffc.runtime.neighbours import VerletList
from mlffc.students import checkpoint_path, load_student

HERE = Path(__file__).parent
RANGES = {"basis": "radial basis", "envelope": "radial basis", "radial": "species mixing (radial linear)",
          "_invariants": "edge->moment scatter + invariants", "embeddings": "neighbour embeddings",
          "readout": "per-atom MLP"}
# backward autograd nodes -> op class (by the forward op they differentiate)
BACKWARD = {"IndexAddBackward0": "scatter", "IndexBackward0": "gather", "MmBackward0": "matmul",
            "AddmmBackward0": "matmul", "BmmBackward0": "matmul", "SiluBackward0": "activation",
            "CatBackward0": "cat/split", "SplitBackward0": "cat/split", "MulBackward0": "elementwise",
            "DivBackward0": "elementwise", "SubBackward0": "elementwise", "AddBackward0": "elementwise",
            "SinBackward0": "elementwise", "PowBackward0": "elementwise", "LinalgVectorNormBackward0": "elementwise"}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def wrap(module, attr: str, label: str) -> None:
    inner = getattr(module, attr)

    def ranged(*args, **kwargs):
        with record_function(f"class::{label}"):
            return inner(*args, **kwargs)

    setattr(module, attr, ranged)


def timed(fn, rounds: int) -> dict:
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(samples), "min_ms": min(samples)}


def eager_profile(student, graph, rounds: int) -> dict:
    for name, label in RANGES.items():
        if hasattr(student, name):
            target = student if name == "_invariants" else getattr(student, name)
            if isinstance(target, torch.nn.ModuleList):
                for sub in target:
                    wrap(sub, "forward", label)
            elif name == "_invariants":
                wrap(student, name, label)
            else:
                wrap(target, "forward", label)
    wrap(student, "features", "forward total")
    student(*graph.inputs())
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        for _ in range(rounds):
            with record_function("class::call"):
                student(*graph.inputs())
    events = prof.events()
    classes, backward, flops, nbytes = defaultdict(float), defaultdict(float), 0.0, 0.0
    for ev in events:
        name = ev.name
        if name.startswith("class::"):
            classes[name[7:]] += ev.cpu_time_total / 1e3 / rounds
        elif name.startswith("autograd::engine::evaluate_function: "):
            node = name.split(": ", 1)[1]
            backward[BACKWARD.get(node, node)] += ev.cpu_time_total / 1e3 / rounds
        if name.startswith("aten::") and ev.cpu_parent is not None and not ev.cpu_parent.name.startswith("aten::"):
            flops += (ev.flops or 0) / rounds
            for shape, dtype in zip(ev.input_shapes or [], ev.input_dtypes or []):
                if isinstance(shape, list) and shape and all(isinstance(s, int) for s in shape):
                    size = 8 if "long" in str(dtype).lower() or "double" in str(dtype).lower() else 4
                    numel = 1
                    for s in shape:
                        numel *= s
                    nbytes += numel * size / rounds
    total = classes.pop("call")
    forward = classes.pop("forward total")
    ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return {"total_ms_profiled": total, "forward_ms": forward, "forward_classes": dict(classes),
            "forward_other_ms (edge geometry, pair construction, standardisation)": forward - sum(classes.values()),
            "backward_ms": sum(backward.values()), "backward_classes": dict(sorted(backward.items(), key=lambda kv: -kv[1])),
            "flops": flops, "input_bytes": nbytes, "op_table": ops}


def matmul_rate() -> float:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    t = timed(lambda: a @ b, 200)["min_ms"]
    return 2 * 256**3 / (t / 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="ani1x-moment")
    parser.add_argument("--waters", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "profile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = uptime()
    student, _ = load_student(args.student)
    atoms = molecular_cluster("H2O", args.waters)
    graph = build_graph([atoms], student.cutoff)

    artifact = args.out / "artifact"
    compile_student(checkpoint_path(args.student), resolve_target("cpu", "aoti"), artifact)
    model = load(artifact, threads=1)
    torch.set_num_threads(1)
    verlet = VerletList(student.cutoff, skin=0.0)

    report = {"atoms": len(atoms), "edges": int(graph.edge_index.shape[1]), "uptime_before": load_before,
              "matmul_flops_per_s": matmul_rate()}
    report["eager_ms"] = timed(lambda: student(*graph.inputs()), args.rounds)
    report["compiled_graph_ms"] = timed(lambda: model.run(graph), args.rounds)

    def with_list():
        verlet.rebuild(atoms)
        model.run(verlet.graph(atoms))

    report["compiled_with_neighbour_list_ms"] = timed(with_list, args.rounds)
    report["neighbour_list_ms"] = timed(lambda: verlet.rebuild(atoms), args.rounds)
    report["eager_profile"] = eager_profile(student, graph, args.rounds)
    report["uptime_after"] = uptime()
    (args.out / "profile.json").write_text(json.dumps({k: v for k, v in report.items()}, indent=2, default=str))
    text = markdown(report)
    (args.out / "profile.md").write_text(text)
    print(text)


def markdown(r: dict) -> str:
    p = r["eager_profile"]
    lines = [f"{r['atoms']} atoms, {r['edges']} edges, 1 thread. Load before: {r['uptime_before']}; after: {r['uptime_after']}",
             "", "| what | ms |", "|---|---|",
             f"| eager energy+forces (timed) | {r['eager_ms']['median_ms']:.2f} |",
             f"| eager under profiler | {p['total_ms_profiled']:.2f} |",
             f"| compiled graph (aoti, default cpu passes) | {r['compiled_graph_ms']['median_ms']:.2f} |",
             f"| compiled + neighbour list | {r['compiled_with_neighbour_list_ms']['median_ms']:.2f} |",
             f"| neighbour list rebuild | {r['neighbour_list_ms']['median_ms']:.2f} |",
             "", "| eager forward class | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in p["forward_classes"].items()]
    other = [k for k in p if k.startswith("forward_other")][0]
    lines += [f"| other: {other[14:]} | {p[other]:.3f} |", f"| forward total | {p['forward_ms']:.3f} |",
              "", "| eager backward class (autograd node) | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in list(p["backward_classes"].items())[:15]]
    lines += [f"| backward total | {p['backward_ms']:.3f} |", ""]
    gflops = p["flops"] / 1e9
    lines += [f"Counted work per call: {gflops * 1e3:.1f} MFLOP, {p['input_bytes'] / 1e6:.1f} MB of op inputs. "
              f"Eager: {gflops / (r['eager_ms']['median_ms'] / 1e3):.2f} GFLOP/s, "
              f"{p['input_bytes'] / 1e9 / (r['eager_ms']['median_ms'] / 1e3):.2f} GB/s; compiled graph at the same FLOP count: "
              f"{gflops / (r['compiled_graph_ms']['median_ms'] / 1e3):.2f} GFLOP/s; single-core 256^3 matmul: "
              f"{r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s.", "", "```", p["op_table"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
