"""Run inside a peer's own virtual environment (bench/bench_peers.py starts it): load a trained
NequIP or MACE model through the peer's ASE calculator, predict energy and forces on the test
frames, time energy+forces calls (neighbour list included) on 1 thread, write .npz and .json.

Imports only the peer's packages, ASE, numpy and torch: mlffc is not installed in these
environments. Predictions are written as plain arrays (energy [B], forces [N, 3], frame order)
for bench_peers.py to score with mlffc.metrics in the main environment.

    VENV/bin/python bench/peer_worker.py --kind nequip|mace --model PATH --test TEST.extxyz \
        --clusters CLUSTERS.extxyz --out DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import all_changes
from ase.io import read


def nequip_calculators(model: str):
    """NequIP's recommended path: the `nequip-compile --mode aotinductor --target ase` file in
    NequIPCalculator.from_compiled_model; the same calculator for accuracy and speed."""
    from nequip.integrations.ase import NequIPCalculator

    calculator = NequIPCalculator.from_compiled_model(model, device="cpu")
    return calculator, lambda atoms: calculator, "nequip-compile --mode aotinductor --target ase"


def mace_calculators(model: str):
    """MACE's calculator, eager for accuracy; for speed its torch.compile path (compile_mode
    'default'; one calculator per system size, as it pads to the first system's size), or eager
    where compiling fails (said in the result)."""
    from mace.calculators import MACECalculator

    eager = MACECalculator(model_paths=model, device="cpu", default_dtype="float32")
    state = {"how": "torch.compile (MACECalculator compile_mode='default')"}

    def for_speed(atoms):
        if state["how"].startswith("eager"):
            return eager
        try:
            compiled = MACECalculator(model_paths=model, device="cpu", default_dtype="float32", compile_mode="default")
            energy_forces(compiled, atoms)  # compiles here, outside the timing
            return compiled
        except Exception as error:  # noqa: BLE001 - any compile failure falls back to eager, recorded
            state["how"] = f"eager (torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0][:200]})"
            traceback.print_exc()
            return eager

    return eager, for_speed, state


def energy_forces(calculator, atoms):
    """One full energy+forces evaluation (the calculator's neighbour list included), uncached."""
    calculator.calculate(atoms, ["energy", "forces"], all_changes)
    return float(calculator.results["energy"]), np.asarray(calculator.results["forces"], dtype=np.float64)


def timed_ms(fn, repeats: int, budget_s: float) -> dict:
    fn()
    samples, deadline = [], time.perf_counter() + budget_s
    while len(samples) < 3 or (len(samples) < repeats and time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        samples.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "repeats": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("nequip", "mace"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--clusters", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of repeats per size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    accuracy_calc, speed_calc, how = (nequip_calculators if args.kind == "nequip" else mace_calculators)(args.model)
    energy, forces = [], []
    started = time.perf_counter()
    for atoms in read(args.test, index=":"):
        e, f = energy_forces(accuracy_calc, atoms)
        energy.append(e)
        forces.append(f)
    predict_s = time.perf_counter() - started
    np.savez(args.out / "predictions.npz", energy=np.array(energy), forces=np.concatenate(forces))

    speed = {}
    for atoms in read(args.clusters, index=":"):
        calculator = speed_calc(atoms)
        speed[str(len(atoms))] = timed_ms(lambda: energy_forces(calculator, atoms), args.repeats, args.budget)
        print(f"{args.kind} {len(atoms)} atoms: {speed[str(len(atoms))]['median_ms']:.2f} ms", flush=True)
    result = {"kind": args.kind, "how": how if isinstance(how, str) else how["how"], "torch": torch.__version__,
              "threads": torch.get_num_threads(), "predict_seconds": predict_s, "speed": speed,
              "parameters": parameters(accuracy_calc)}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


def parameters(calculator) -> int | None:
    """Trainable parameters of the eager model (MACE); None for a compiled NequIP file."""
    models = getattr(calculator, "models", None)
    return sum(p.numel() for p in models[0].parameters()) if models else None


if __name__ == "__main__":
    main()
