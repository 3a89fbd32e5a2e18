"""The fused `mlffc::edge_moments` op against the eager moments it replaces, and the compiled
artifact with and without the pass that rewrites onto it, at ~300 atoms, 1 thread.

    .venv/bin/python bench/bench_edge_moments.py [--student ani1x-moment] [--waters 100] [--rounds 200] [--compiled]

Op level: the default student's per-edge inputs of its first interaction on a water cluster
(radial weights [E, 3C], dipole and quadrupole bases [E, 3 + 6], centre-sorted edges); eager is
the student's eval-mode form (per-edge products concatenated, `index_add` into atoms), forward
and backward (autograd of the moments with a fixed output gradient) against the op and its
backward op. With --compiled, `mlffc compile`'s pipeline (cpu target, aoti) twice: the cpu
target's passes without fuse_edge_moments and with it; the compiled graph is timed without the
neighbour list. Timings are medians of --rounds calls (interleaved between the variants
for the compiled artifacts); `uptime` before and after. Writes bench/out/edge_moments.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from mlffc import ops
from mlffc.data.clusters import molecular_cluster
from mlffc.graph import build_graph, edge_vectors
from mlffc.students import checkpoint_path, load_student
from mlffc.students.base import symmetric_outer

HERE = Path(__file__).parent
ORDERS = [0, 3, 6]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Samples:
    """Wall and this thread's CPU time per call, ms. On a shared machine the CPU time is the
    steadier figure (time preempted by other processes is not counted); both are reported."""

    def __init__(self):
        self.wall, self.cpu = [], []

    def time(self, fn) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        self.cpu.append(1e3 * (time.thread_time() - cpu))
        self.wall.append(1e3 * (time.perf_counter() - wall))

    def summary(self) -> dict:
        return {"wall_median_ms": statistics.median(self.wall), "wall_min_ms": min(self.wall),
                "cpu_median_ms": statistics.median(self.cpu), "runs": len(self.wall)}


def timed(fn, rounds: int) -> dict:
    fn()
    samples = Samples()
    for _ in range(rounds):
        samples.time(fn)
    return samples.summary()


def edge_inputs(student, graph):
    """The first interaction's radial weights [E, 3C] and angular bases [E, 9], as the student makes them."""
    vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    z = student.species_index[graph.species]
    j = graph.edge_index[1]
    r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    u = vectors / r
    pair = ((student.basis(r) * student.envelope(r)).unsqueeze(2) * student.onehot[z[j]].unsqueeze(1)).flatten(1)
    radial = student.radial(pair).chunk(student.interactions, dim=1)[0]
    return radial.detach().contiguous(), torch.cat([u, symmetric_outer(u)], 1).detach().contiguous()


def eager_moments(radial, basis, centre, num_atoms, c):
    per_edge = torch.cat([radial[:, :c], (radial[:, c : 2 * c].unsqueeze(2) * basis[:, None, :3]).flatten(1),
                          (radial[:, 2 * c :].unsqueeze(2) * basis[:, None, 3:]).flatten(1)], 1)
    return torch.zeros(num_atoms, per_edge.shape[1], dtype=per_edge.dtype).index_add(0, centre, per_edge)


def op_timings(student, graph, rounds: int) -> dict:
    mlffc = torch.ops.mlffc
    radial, basis = edge_inputs(student, graph)
    centre, n, c = graph.edge_index[0], graph.positions.shape[0], student.channels
    reference = eager_moments(radial, basis, centre, n, c)
    fused = mlffc.edge_moments(radial, basis, centre, n, ORDERS)
    grad = torch.randn_like(reference)
    r, b = radial.clone().requires_grad_(), basis.clone().requires_grad_()
    eager_grads = torch.autograd.grad(eager_moments(r, b, centre, n, c), (r, b), grad)
    fused_grads = mlffc.edge_moments_backward(grad, radial, basis, centre, ORDERS)

    def eager_backward():
        out = eager_moments(r, b, centre, n, c)
        torch.autograd.grad(out, (r, b), grad)

    return {
        "channels": c,
        "max_difference": {"moments": float((fused - reference).abs().max()),
                           "grad_weights": float((fused_grads[0] - eager_grads[0]).abs().max()),
                           "grad_basis": float((fused_grads[1] - eager_grads[1]).abs().max())},
        "eager_forward": timed(lambda: eager_moments(radial, basis, centre, n, c), rounds),
        "eager_forward_and_backward": timed(eager_backward, rounds),
        "op_forward": timed(lambda: mlffc.edge_moments(radial, basis, centre, n, ORDERS), rounds),
        "op_backward": timed(lambda: mlffc.edge_moments_backward(grad, radial, basis, centre, ORDERS), rounds),
    }


def compiled_timings(student_name: str, graph, rounds: int) -> dict:
    from mlffc.compiler import compile_student, resolve_target
    from mlffc.runtime import load

    default = list(resolve_target("cpu", "aoti").passes)
    without = [p for p in default if p != "fuse_edge_moments"]
    variants = {"without fuse_edge_moments": without, "with fuse_edge_moments": [*without, "fuse_edge_moments"]}
    models, report = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, passes in variants.items():
            artifact = Path(tmp) / name.replace(" ", "_")
            manifest = compile_student(checkpoint_path(student_name), resolve_target("cpu", "aoti", passes=passes), artifact)
            models[name] = load(artifact, threads=1)
            report[name] = {"passes": [p.name for p in manifest.passes if p.applied],
                            "rejected": {p.name: p.rejected for p in manifest.passes if not p.applied},
                            "pass_errors": {p.name: p.error.to_dict() if p.error else None for p in manifest.passes},
                            "acceptance": manifest.accuracy.vs_eager.to_dict()}  # compile_student raises when it fails
        torch.set_num_threads(1)
        samples = {name: Samples() for name in models}
        for model in models.values():
            model.run(graph)
        for _ in range(rounds):  # interleaved, so load changes hit both alike
            for name, model in models.items():
                samples[name].time(lambda: model.run(graph))
    for name, entry in report.items():
        entry["graph"] = samples[name].summary()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="ani1x-moment")
    parser.add_argument("--waters", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--compiled", action="store_true", help="also compile the artifact with and without the pass")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "edge_moments.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ops.load()
    student, _ = load_student(args.student)
    graph = build_graph([molecular_cluster("H2O", args.waters)], student.cutoff)
    report = {"atoms": int(graph.positions.shape[0]), "edges": int(graph.edge_index.shape[1]), "uptime_before": uptime()}
    report["op"] = op_timings(student, graph, args.rounds)
    if args.compiled:
        report["compiled"] = compiled_timings(args.student, graph, args.rounds)
    report["uptime_after"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
