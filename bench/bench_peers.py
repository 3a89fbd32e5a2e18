"""Peers, measured in the same run: small NequIP and MACE models trained on the same teacher
labels for the same wall time with their own trainers, against our compiled student and the
teacher, on the same held-out test frames and the same water clusters.

    nice -n 19 .venv/bin/python bench/bench_peers.py --data DATA.h5 [--minutes 30] [--sizes 30,300,1000,3000]
    nice -n 19 .venv/bin/python bench/bench_peers.py --toy          # smoke test: tiny data, 1-minute trainings

The peers are not project dependencies: each gets its own virtual environment under --out
(venv-nequip: torch==2.13.0 nequip==0.19.1; venv-mace: torch==2.13.0 mace-torch==0.3.16; they
conflict), made with `python -m venv` + pip and reused on a re-run. The data (an mlffc dataset)
is exported to extxyz (train/val/test by the dataset's own `split`, so the test frames are the
held-out scaffold families; without --data the bundled G2/S22 seeds are sampled into
OUT/data.h5). Models:

- NequIP 2 layers, l_max 1, 16 features, r_max 4 Å: `nequip-train` (Lightning max_time = the
  wall time), then `nequip-compile --mode aotinductor --device cpu --target ase` (its docs'
  recommendation for ASE), run through NequIPCalculator.from_compiled_model.
- MACE 2 interactions, hidden irreps --mace-irreps (32x0e, or 32x0e+32x1o), r_max 4 Å:
  `mace_run_train`, stopped at the wall time and finished by a `--restart_latest` run with no
  epochs left (it has no wall-time option; that run writes the .model of the best checkpoint);
  timed through MACECalculator's torch.compile path (eager where that fails, as reported).
- ours: the shipped pretrained student (--student, default ani1x-moment), `mlffc compile
  --target cpu`, through the Python runtime's compute (neighbour list included).
- teacher: ANI-1x, 8 networks, float32, one structure per call.

Accuracy: each peer predicts the test frames through its ASE calculator in its own environment
(bench/peer_worker.py writes .npz); all are scored here with mlffc.metrics. Speed: energy +
forces per call at each size on 1 thread, neighbour list included, median of repeats. Both
energies use the same per-element reference energies (least squares on the training split).
Resumable: venvs, exported data, finished trainings and compiled models in --out are reused.
Writes OUT/peers.json and OUT/peers.md and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mlffc.errors import MlffcError

HERE = Path(__file__).resolve().parent
WORKER = HERE / "peer_worker.py"
PEERS = {"nequip": ["torch==2.13.0", "nequip==0.19.1"], "mace": ["torch==2.13.0", "mace-torch==0.3.16"]}
MACE_IRREPS = ("32x0e", "32x0e+32x1o")
DEFAULT_SIZES = (30, 300, 1000, 3000)
TOY_SIZES = (30, 300)
TOY_FRAMES = {"train": 60, "val": 10, "test": 10}
CUTOFF = 4.0  # Å, both peers
# Cell given to non-periodic frames in the exported files (pbc stays false, so no images and no
# change to any label): nequip-compile checks its compiled stress against eager on a training
# frame, and with a zero cell both are NaN (volume 0), which fails the check.
BOX = 50.0  # Å
# Data made when --data is not given: the bundled G2/S22 seeds, few samples each (~800 frames).
DEFAULT_DATA_ARGS = ["--seeds", "molecules", "--limit", "120", "--mutants-per-seed", "0", "--rattles-per-scale", "1",
                     "--normal-modes", "1", "--md-steps", "16", "--packed", "4"]


def parse_sizes(text: str) -> tuple[int, ...]:
    """'30,300' -> (30, 300): approximate atoms per water cluster (each becomes round(n / 3) waters)."""
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise MlffcError(f"--sizes {text!r}: expected comma-separated atom counts such as 30,300,1000,3000") from None
    small = [s for s in sizes if s < 3]
    if small:
        raise MlffcError(f"--sizes {text!r}: every size must be at least 3 atoms (one water), got {small}")
    return sizes


def check_args(args) -> None:
    if args.minutes is not None and not args.minutes > 0:
        raise MlffcError(f"--minutes {args.minutes}: the training wall time must be positive")
    if args.mace_irreps not in MACE_IRREPS:
        raise MlffcError(f"--mace-irreps {args.mace_irreps!r}: allowed are {', '.join(MACE_IRREPS)}")
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown or not args.peers:
        raise MlffcError(f"--peers {','.join(args.peers)}: allowed are {', '.join(PEERS)}")
    if args.data is not None and not args.data.exists():
        raise MlffcError(f"--data {args.data}: no such file or directory")


def run(command: list[str], log: Path, env: dict | None = None, cwd: Path | None = None, timeout: float | None = None) -> None:
    """Run `command`, its output appended to `log`; a failure names the command and the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, timeout=timeout)
    if result.returncode != 0:
        raise MlffcError(f"{command[0]} exited with {result.returncode}; see {log}")


def ensure_venv(out: Path, peer: str) -> Path:
    """OUT/venv-PEER with PEERS[peer] installed (reused when its marker names the same packages)."""
    venv = out / f"venv-{peer}"
    marker = venv / "mlffc-peer-packages.txt"
    spec = " ".join(PEERS[peer])
    if marker.exists() and marker.read_text().strip() == spec:
        return venv
    if venv.exists() and not (venv / "bin" / "python").exists():
        raise MlffcError(f"{venv} exists but is no virtual environment; remove it or choose another --out")
    print(f"installing {spec} into {venv}", flush=True)
    if not venv.exists():
        run([sys.executable, "-m", "venv", str(venv)], out / f"{peer}-install.log")
    run([str(venv / "bin" / "pip"), "install", "-q", *PEERS[peer]], out / f"{peer}-install.log")
    marker.write_text(spec + "\n")
    return venv


def peer_env(peer: str, threads: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if peer == "mace":  # mace-torch's pinned e3nn 0.4.4 reads its constants with torch.load
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def prepare_data(args, work: Path) -> dict:
    """Export the dataset's splits to WORK/data/{train,val,test}.extxyz (toy: the first frames of
    each); per-element reference energies by least squares on the training split."""
    from mlffc.data.exchange import export_extxyz
    from mlffc.data.storage import SPLITS, read_dataset

    frames = read_dataset(args.data)
    digest = hashlib.sha256(frames.energy.tobytes() + frames.positions.tobytes()).hexdigest()[:16]
    elements = sorted({int(z) for z in frames.numbers})
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name in SPLITS:
        part = frames.split_named(name)
        if args.toy:
            part = part.select(np.arange(min(len(part), TOY_FRAMES[name])))
        if len(part) == 0:
            raise MlffcError(f"{args.data}: its {name} split is empty; the peers need train, val and test frames")
        path = data_dir / f"{name}.extxyz"
        if not path.exists():
            boxed = part.select(np.arange(len(part)))  # a copy: the box is for the peers' files only
            boxed.cell[~boxed.pbc.any(axis=1)] = np.eye(3) * BOX
            export_extxyz(boxed, path)
        splits[name] = part
    train = splits["train"]
    counts = np.stack([np.bincount(train.numbers[train.offsets[k]:train.offsets[k + 1]], minlength=max(elements) + 1)[elements]
                       for k in range(len(train))]).astype(np.float64)
    e0 = np.linalg.lstsq(counts, train.energy, rcond=None)[0]
    return {"path": str(args.data), "sha": digest, "elements": elements, "test": splits["test"], "dir": data_dir,
            "frames": {name: len(part) for name, part in splits.items()},
            "e0": {int(z): float(e) for z, e in zip(elements, e0)}}


def check_settings(directory: Path, settings: dict) -> bool:
    """True when DIRECTORY holds a finished run with these settings; refuses other settings."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "settings.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found != settings:
            different = sorted(k for k in settings.keys() | found.keys() if settings.get(k) != found.get(k))
            raise MlffcError(f"{directory} was made with other settings ({', '.join(different)}); "
                             "remove it or choose another --out")
    else:
        path.write_text(json.dumps(settings, indent=2))
    return (directory / "done.json").exists()


def nequip_config(data: dict, seconds: float, run_dir: Path) -> dict:
    """nequip 0.19 config (the tutorial's layout): 2 layers, l_max 1, 16 features, r_max 4 Å,
    EMA module, energy (per atom) + forces loss 1:1, Adam 0.01 with ReduceLROnPlateau."""
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[z] for z in data["elements"]]
    days, rest = divmod(int(seconds), 86400)
    max_time = f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    metric = "val0_epoch/weighted_sum"
    d = data["dir"]
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule", "seed": 456,
            "train_file_path": str(d / "train.extxyz"), "val_file_path": str(d / "val.extxyz"),
            "transforms": [{"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": symbols,
                            "chemical_species_to_atom_type_map": {s: s for s in symbols}},
                           {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": CUTOFF}],
            "train_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 5, "shuffle": True},
            "val_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 10},
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": symbols,
                              "dataloader_kwargs": {"batch_size": 10}},
        },
        "trainer": {
            "_target_": "lightning.Trainer", "accelerator": "cpu", "max_epochs": 1000000, "max_time": max_time,
            "check_val_every_n_epoch": 1, "log_every_n_steps": 20, "enable_progress_bar": False,
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(run_dir)},
            "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": metric,
                           "dirpath": str(run_dir), "filename": "best", "save_last": True}],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule", "ema_decay": 0.999,
            "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0}},
            "val_metrics": {"_target_": "nequip.train.EnergyForceMetrics",
                            "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0}},
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01},
            "lr_scheduler": {"scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "factor": 0.6,
                                           "patience": 5, "threshold": 0.2, "min_lr": 1e-6},
                             "monitor": metric, "interval": "epoch", "frequency": 1},
            "model": {
                "_target_": "nequip.model.NequIPGNNModel", "seed": 456, "model_dtype": "float32",
                "type_names": symbols, "r_max": CUTOFF, "num_layers": 2, "l_max": 1, "parity": True, "num_features": 16,
                "radial_mlp_depth": 2, "radial_mlp_width": 64, "num_bessels": 8, "polynomial_cutoff_p": 6,
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
                "per_type_energy_shifts": {chemical_symbols[z]: e for z, e in data["e0"].items()},
                "per_type_energy_scales_trainable": False, "per_type_energy_shifts_trainable": False,
            },
        },
        "global_options": {"allow_tf32": False},
    }


def train_nequip(venv: Path, data: dict, seconds: float, work: Path) -> dict:
    import yaml

    directory = work / "nequip"
    run_dir = directory / "run"
    log = directory / "train.log"
    (directory / "config.yaml").write_text(yaml.safe_dump(nequip_config(data, seconds, run_dir), sort_keys=False))
    started = time.perf_counter()
    run([str(venv / "bin" / "nequip-train"), "-cp", str(directory), "-cn", "config.yaml", f"hydra.run.dir={run_dir}"],
        log, env=peer_env("nequip"), cwd=directory, timeout=seconds + 1800)
    trained = time.perf_counter() - started
    model = directory / "model.nequip.pt2"
    run([str(venv / "bin" / "nequip-compile"), str(run_dir / "best.ckpt"), str(model), "--mode", "aotinductor",
         "--device", "cpu", "--target", "ase"], directory / "compile.log", env=peer_env("nequip"), cwd=directory)
    epochs = sorted(run_dir.glob("lightning_logs/version_*/metrics.csv"))
    return {"model": str(model), "train_seconds": trained, "epochs": count_epochs(epochs[-1]) if epochs else None,
            "parameters": nequip_parameters(venv, run_dir / "best.ckpt"),
            "size": "2 layers, l_max 1, 16 features (parity), r_max 4 Å", "compiled": "nequip-compile aotinductor (--target ase)"}


def nequip_parameters(venv: Path, checkpoint: Path) -> int:
    """Trainable parameters of a nequip-train checkpoint: its EMA copies, one per parameter
    (read in the peer's environment; a Lightning checkpoint is a pickle, loaded only there)."""
    script = ("import sys, torch; sd = torch.load(sys.argv[1], map_location='cpu', weights_only=False)['state_dict']; "
              "print(sum(v.numel() for k, v in sd.items() if k.startswith('ema.ema_weight_')))")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", script, str(checkpoint)], capture_output=True, text=True,
                            env=peer_env("nequip"))
    if result.returncode != 0:
        raise MlffcError(f"could not count the parameters of {checkpoint}: {result.stderr.strip()[-300:]}")
    return int(result.stdout.split()[-1])


def count_epochs(metrics_csv: Path) -> int | None:
    """Epochs in a Lightning CSVLogger metrics file (its `epoch` column)."""
    import csv

    with open(metrics_csv) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]
    return max(epochs) + 1 if epochs else None


def mace_command(venv: Path, data: dict, irreps: str, directory: Path) -> list[str]:
    d = data["dir"]
    e0 = "{" + ", ".join(f"{z}: {e!r}" for z, e in data["e0"].items()) + "}"
    return [str(venv / "bin" / "mace_run_train"), "--name", "mace", "--work_dir", str(directory), "--seed", "123",
            "--train_file", str(d / "train.extxyz"), "--valid_file", str(d / "val.extxyz"),
            "--energy_key", "energy", "--forces_key", "forces", "--E0s", e0,
            "--model", "MACE", "--hidden_irreps", irreps, "--r_max", str(CUTOFF), "--num_interactions", "2",
            "--device", "cpu", "--default_dtype", "float32", "--batch_size", "5", "--valid_batch_size", "10",
            "--ema", "--ema_decay", "0.99", "--eval_interval", "1", "--plot", "False", "--save_cpu"]


def train_mace(venv: Path, data: dict, seconds: float, irreps: str, work: Path) -> dict:
    """mace_run_train for `seconds` of wall time (then stopped; it saves the best model so far as
    a checkpoint at every improvement), then a --restart_latest run with no epochs left, which
    loads that checkpoint and writes mace.model."""
    directory = work / "mace"
    log = directory / "train.log"
    command = mace_command(venv, data, irreps, directory)
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)} --max_num_epochs 1000000  (stopped after {seconds:.0f} s)\n")
        out.flush()
        process = subprocess.Popen([*command, "--max_num_epochs", "1000000"], stdout=out, stderr=subprocess.STDOUT,
                                   env=peer_env("mace"), cwd=directory)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    trained = time.perf_counter() - started
    checkpoints = sorted((directory / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        raise MlffcError(f"mace_run_train left no checkpoint in {directory / 'checkpoints'} in {seconds:.0f} s; see {log}")
    epoch = int(checkpoints[-1].stem.rsplit("epoch-", 1)[1].split("_")[0])
    run([*command, "--restart_latest", "--max_num_epochs", str(epoch)], log, env=peer_env("mace"), cwd=directory)
    model = directory / "mace.model"
    if not model.exists():
        raise MlffcError(f"mace_run_train wrote no {model}; see {log}")
    return {"model": str(model), "train_seconds": trained, "epochs": epoch + 1,
            "size": f"2 interactions, hidden {irreps}, max_ell 3, correlation 3, r_max 4 Å"}


def evaluate_peer(peer: str, venv: Path, trained: dict, data: dict, clusters: Path, work: Path) -> dict:
    out = work / peer / "eval"
    run([str(venv / "bin" / "python"), str(WORKER), "--kind", peer, "--model", trained["model"],
         "--test", str(data["dir"] / "test.extxyz"), "--clusters", str(clusters), "--out", str(out)],
        work / peer / "eval.log", env=peer_env(peer, threads=1))
    result = json.loads((out / "result.json").read_text())
    with np.load(out / "predictions.npz") as p:
        energy, forces = p["energy"], p["forces"]
    measured = {"speed": {int(k): v["median_ms"] for k, v in result["speed"].items()}, "how": result["how"],
                "test": score(energy, forces, data["test"])}
    return measured | ({"parameters": result["parameters"]} if result["parameters"] is not None else {})


def score(energy, forces, test) -> dict:
    from mlffc.metrics import errors_by_category

    return errors_by_category(np.asarray(energy), np.asarray(forces), test)


def ours(name: str, data: dict, clusters: list, work: Path) -> dict:
    import torch

    from mlffc.compiler import compile_student, resolve_target
    from mlffc.runtime import load
    from mlffc.students import checkpoint_path
    from mlffc.timing import median_ms

    artifact = work / "student-artifact"
    if not (artifact / "manifest.json").exists():
        compile_student(checkpoint_path(name), resolve_target("cpu"), artifact)
    model = load(artifact, threads=1)
    torch.set_num_threads(1)
    test = data["test"]
    labels = model.compute([test.atoms(k) for k in range(len(test))])
    speed = {len(atoms): median_ms(lambda: model.compute(atoms), repeats=20, budget_s=20.0) for atoms in clusters}
    info = model.manifest.model
    return {"speed": speed, "how": "mlffc compile --target cpu (aoti), Python runtime compute",
            "parameters": info.parameters, "size": f"{info.architecture}, cutoff {info.cutoff:g} Å",
            "test": score(labels["energy"], np.concatenate(labels["forces"]), test)}


def teacher_speed(clusters: list) -> dict:
    """ANI-1x (8 networks, float32), a fresh teacher per size (FeNNol pads to the largest batch seen)."""
    from mlffc.teachers import load_teacher
    from mlffc.timing import median_ms

    speed = {}
    for atoms in clusters:
        teacher = load_teacher("ani1x", precision="float32")
        speed[len(atoms)] = median_ms(lambda: teacher.compute([atoms]), repeats=10, budget_s=30.0)
    return speed


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    header = ["model", "size", "params", "training", "compiled as", "force MAE (eV/Å)", "energy MAE (meV/atom)",
              *[f"{n} atoms (ms)" for n in sizes]]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in report["rows"]:
        test = row.get("test", {}).get("all")
        training = (f"{row['train_seconds'] / 60:.1f} min, {row['epochs']} epochs" if row.get("train_seconds") is not None
                    else row.get("training", ""))
        cells = [row["name"], row.get("size", ""), "" if row.get("parameters") is None else f"{row['parameters']:,}", training,
                 row.get("how", ""), "" if test is None else f"{test['force_mae']:.4f}",
                 "" if test is None else f"{1e3 * test['energy_mae_per_atom']:.2f}",
                 *[f"{row['speed'][n]:.1f}" if n in row.get("speed", {}) else "" for n in sizes]]
        lines.append("| " + " | ".join(cells) + " |")
    frames = report["data"]["frames"]
    lines += ["", f"Data: {report['data']['path']} ({frames['train']} train / {frames['val']} val / {frames['test']} test frames; "
                  f"test = the dataset's held-out scaffold families). Training wall time {report['minutes']} min each. "
                  f"Speed: energy+forces per call, 1 thread, neighbour list included, water clusters. "
                  f"Load before: {report['uptime_before']}; after: {report['uptime_after']}."]
    for row in report["rows"]:
        if row.get("error"):
            lines.append(f"- {row['name']}: {row['error']}")
    return "\n".join(lines) + "\n"


def write(out: Path, report: dict) -> str:
    serialisable = {k: v for k, v in report.items() if k != "test"}
    (out / "peers.json").write_text(json.dumps(serialisable, indent=2, default=str))
    text = markdown(report)
    (out / "peers.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="mlffc dataset (file, shard directory or glob)")
    parser.add_argument("--minutes", type=float, default=None, help="training wall time of each peer (default 30; --toy: 1)")
    parser.add_argument("--sizes", type=parse_sizes, default=None, help="water-cluster atoms, e.g. 30,300,1000,3000")
    parser.add_argument("--toy", action="store_true", help="tiny data (the first frames of each split), 1-minute trainings")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "peers")
    parser.add_argument("--peers", type=lambda s: s.split(","), default=list(PEERS), help="nequip,mace")
    parser.add_argument("--mace-irreps", default=MACE_IRREPS[0], help=f"MACE hidden irreps: {' or '.join(MACE_IRREPS)}")
    parser.add_argument("--student", default="ani1x-moment", help="our compiled student (a pretrained name or checkpoint)")
    args = parser.parse_args(argv)
    check_args(args)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")  # before JAX starts
    minutes = args.minutes or (1.0 if args.toy else 30.0)
    sizes = args.sizes or (TOY_SIZES if args.toy else DEFAULT_SIZES)
    out = args.out.resolve()
    work = out / "toy" if args.toy else out
    work.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        args.data = out / "data.h5"
        if not args.data.exists():
            run([sys.executable, "-m", "mlffc", "generate", "--out", str(args.data), *DEFAULT_DATA_ARGS], out / "data.log")

    from rich.console import Console
    from rich.markdown import Markdown

    from mlffc.data.clusters import molecular_cluster

    console = Console()
    data = prepare_data(args, work)
    clusters = [molecular_cluster("H2O", round(n / 3)) for n in sizes]
    clusters_path = work / "clusters.extxyz"
    from ase.io import write as ase_write

    ase_write(clusters_path, clusters, format="extxyz")

    trained = {}
    for peer in args.peers:
        venv = ensure_venv(out, peer)
        directory = work / peer
        settings = {"data": data["sha"], "frames": data["frames"], "minutes": minutes, "packages": PEERS[peer],
                    **({"irreps": args.mace_irreps} if peer == "mace" else {})}
        if check_settings(directory, settings):
            trained[peer] = json.loads((directory / "done.json").read_text())
            continue
        console.print(f"training {peer} for {minutes} min")
        try:
            result = (train_nequip(venv, data, 60 * minutes, work) if peer == "nequip"
                      else train_mace(venv, data, 60 * minutes, args.mace_irreps, work))
        except (MlffcError, subprocess.TimeoutExpired) as error:
            trained[peer] = {"error": str(error)}
            console.print(f"[red]{peer}: {error}")
            continue
        (directory / "done.json").write_text(json.dumps(result, indent=2))
        trained[peer] = result

    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sizes": [len(a) for a in clusters], "minutes": minutes,
              "cpus": os.cpu_count(), "uptime_before": uptime(), "rows": [],
              "data": {k: v for k, v in data.items() if k in ("path", "sha", "frames", "e0")}}
    console.print("measuring: ours, the peers, then the teacher")
    report["rows"].append({"name": f"ours ({args.student})", **ours(args.student, data, clusters, work),
                           "training": "shipped pretrained (other data, test families unseen by it when the data was "
                                       "made with --unseen-by)"})
    for peer in args.peers:
        row = {"name": {"nequip": "NequIP 0.19.1", "mace": "MACE 0.3.16"}[peer], **trained[peer]}
        if "error" not in row:
            try:
                row.update(evaluate_peer(peer, out / f"venv-{peer}", trained[peer], data, clusters_path, work))
            except MlffcError as error:
                row["error"] = str(error)
        report["rows"].append(row)
    report["rows"].append({"name": "teacher ANI-1x", "size": "8 networks, float32", "how": "FeNNol (JAX)",
                           "training": "", "speed": teacher_speed(clusters)})
    report["uptime_after"] = uptime()
    console.print(Markdown(write(work, report)))


if __name__ == "__main__":
    try:
        main()
    except MlffcError as error:
        raise SystemExit(f"error: {error}") from None
