"""The `mlffc` command line: teachers, students, targets, generate, train, compile, check, demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlffc.check_settings import Limits, MdLimits, MdSettings
from mlffc.data.sampling_config import SamplingConfig
from mlffc.errors import MlffcError
from mlffc.progress import console, output as out

if TYPE_CHECKING:
    from mlffc.runtime.manifest import Manifest

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Distil a force-field teacher into a small student and compile it for a target, checked against the teacher.")


def flag(default: bool, *names: str, help: str):
    """A boolean option, shown without a value type in --help (it takes none)."""
    return typer.Option(default, *names, help=help, metavar="")


@app.command()
def teachers():
    """List the teachers mlffc can distil from, with what each can label."""
    from mlffc.teachers import available_teachers

    def mark(caps, name):
        return "?" if caps is None else "yes" if getattr(caps, name) else "-"

    table = Table("name", "family", "elements", "cutoff Å", "stress", "periodic", "charge/spin", "uncertainty",
                  "weights", "description", title="teachers",
                  caption="?: read from the model file. Orb weights: --weights CHECKPOINT, or --random-init SEED (untrained)")
    for e in available_teachers():
        caps = e.capabilities
        table.add_row(e.name, e.family, e.elements, "?" if e.cutoff is None else f"{e.cutoff:g}", mark(caps, "stress"),
                      mark(caps, "periodic"), mark(caps, "charge_spin"), mark(caps, "uncertainty"), e.weights, e.description)
    (out if out.is_terminal else Console(width=220)).print(table)  # a pipe's default 80 columns would squash it


@app.command()
def students():
    """List the student architectures with their default parameter counts (H, C, N, O)."""
    from mlffc.students import PRETRAINED, STUDENTS, build_student, load_student

    table = Table("name", "parameters (defaults, 4 species)", "description", title="students")
    for name, cls in STUDENTS.items():
        student = build_student(name, species=[1, 6, 7, 8])
        table.add_row(name, f"{sum(p.numel() for p in student.parameters()):,}", (cls.__doc__ or "").strip().splitlines()[0])
    out.print(table)
    pretrained = Table("name", "architecture", "parameters", "teacher", "validation force MAE", title="pretrained (train --init NAME)")
    for name in PRETRAINED:
        try:
            student, extra = load_student(name)
        except MlffcError as error:
            pretrained.add_row(name, "", "", "", f"[red]{error}[/]")
            continue
        val = extra.get("val", {})
        pretrained.add_row(name, student.name, f"{sum(p.numel() for p in student.parameters()):,}",
                           (extra.get("teacher") or {}).get("name", "?"), f"{val.get('force_mae', float('nan')):.4f} eV/Å")
    out.print(pretrained)


@app.command()
def targets():
    """List the compile targets."""
    from mlffc.targets import TARGETS

    table = Table("name", "device", "backend", "backends", "precision", "passes", "description", title="targets")
    for t in TARGETS.values():
        table.add_row(t.name, t.device + (f" {t.arch}" if t.arch else ""), t.backend, ", ".join(t.backends), t.precision, ", ".join(t.passes), t.description)
    (out if out.is_terminal else Console(width=220)).print(table)  # a pipe's default 80 columns would squash it


SAMPLING = SamplingConfig()  # `mlffc generate`'s option defaults are the dataclass's
LIMITS, MD, MD_LIMITS = Limits(), MdSettings(), MdLimits()  # and `mlffc check`'s
GENERATE_HOLDOUT = (0.1, 0.1)  # fractions of seed families `mlffc generate` holds out for validation and test


@app.command()
def generate(
    out_path: Path = typer.Option(..., "--out", help="HDF5 file to write; with --shards, a directory of shard files"),
    teacher: str = typer.Option("ani1x", help="teacher name (mlffc teachers) or fennol:PATH.fnx"),
    weights: Optional[Path] = typer.Option(None, help="checkpoint file of an Orb teacher"),
    random_init: Optional[int] = typer.Option(None, help="Orb teacher with untrained weights from this seed (tests, benchmarks)"),
    precision: Optional[str] = typer.Option(None, help="float32 or float64 (default: float64 FeNNol, float32 Orb)"),
    seeds: str = typer.Option("molecules", help="comma-separated seed sets and files: molecules (G2 + S22), drug-like[:N] "
                              "(MOSES, one per scaffold), fragments[:N] (BRICS, capped), crystals (bulk cells), a SMILES "
                              "file (.smi: SMILES [name] per line) or any structure file ASE reads (extxyz, xyz, db, ...)"),
    on_problem: str = typer.Option("skip", help="seed entries the teacher cannot describe (unparsable SMILES, unknown "
                                   "element, charged or open-shell): skip (listed) or refuse (exit before any work)"),
    seed: int = typer.Option(SAMPLING.seed, help="seed of every sampler"),
    mutants_per_seed: int = typer.Option(SAMPLING.mutants_per_seed, help="new molecules per seed molecule (H -> CH3/NH2/OH)"),
    md_steps: Optional[int] = typer.Option(None, help=f"Langevin steps per temperature (default: {SAMPLING.md_steps} for molecules, "
                                           "0 for crystals, whose MD costs one teacher call per step per cell)"),
    md_interval: int = typer.Option(SAMPLING.md_interval, help="keep every N-th MD step"),
    rattles_per_scale: int = typer.Option(SAMPLING.rattles_per_scale, help="rattled copies per seed and scale"),
    strains_per_scale: int = typer.Option(SAMPLING.strains_per_scale, help="strained copies per crystal and scale"),
    normal_modes: int = typer.Option(SAMPLING.normal_modes_per_temperature, help="normal-mode samples per molecule and temperature "
                                     f"({', '.join(f'{t:.0f} K' for t in SAMPLING.normal_mode_temperatures)}), "
                                     "from the teacher's Hessian; 0 for none"),
    packed: Optional[int] = typer.Option(None, help="packed clusters and periodic boxes (10-1000 atoms) of random seed "
                                         "molecules, over all shards (default: 20 for molecules, 0 for crystals)"),
    spread_quantile: float = typer.Option(SAMPLING.spread_quantile, help="per molecule, drop this fraction of frames with the lowest "
                                          "ensemble spread per sqrt(atoms) (ensemble teachers)"),
    hessian_vectors: int = typer.Option(SAMPLING.hessian_vectors, help="frames per molecule labelled with one exact Hessian-vector product"),
    unseen_by: Optional[Path] = typer.Option(None, help="a student checkpoint this data will fine-tune (train --init): "
                                             "molecules of the scaffold families it was trained on stay in training, so "
                                             "validation and test hold only chemistry it never saw"),
    limit: Optional[int] = typer.Option(None, help="use only the first LIMIT seed groups (molecules or materials)"),
    shards: Optional[int] = typer.Option(None, help="split the work into N shard files in the --out directory"),
    shard: Optional[int] = typer.Option(None, help="make only shard I (0-based) of --shards"),
    workers: int = typer.Option(1, help="shards at once in a local process pool"),
    scheduler: Optional[str] = typer.Option(None, help="run the shards on the Dask scheduler at this address "
                                            "(e.g. tcp://host:8786)"),
    overwrite: bool = flag(False, help="replace existing files made with other settings"),
):
    """Sample configurations from seed structures, label them with the teacher, write HDF5 (one
    file, or shard files that any machine can make; finished shards are skipped on a re-run)."""
    from mlffc.data.shards import TeacherSpec

    _at_least(md_interval=(md_interval, 1), mutants_per_seed=(mutants_per_seed, 0), rattles_per_scale=(rattles_per_scale, 0),
              strains_per_scale=(strains_per_scale, 0), normal_modes=(normal_modes, 0), hessian_vectors=(hessian_vectors, 0),
              workers=(workers, 1), md_steps=(md_steps, 0), packed=(packed, 0), limit=(limit, 1))
    if not 0.0 <= spread_quantile < 1.0:
        raise MlffcError(f"--spread-quantile must be in [0, 1) (a fraction of frames to drop), got {spread_quantile}")
    _check_generate_destination(out_path, shards, shard, workers, scheduler)
    spec = TeacherSpec(teacher, precision, str(weights) if weights else None, random_init)
    labeller = spec.load()
    if "random_init" in labeller.info.source:
        console.print(f"[bold yellow]WARNING: teacher {teacher} has RANDOM weights (--random-init {random_init}): "
                      "its labels are not physics; use them for tests and benchmarks only. The dataset records it.[/]")
    chosen = _chosen_seeds(seeds, teacher, labeller, on_problem, limit, unseen_by)
    has_molecules = any(not atoms.pbc.any() for _, atoms in chosen)
    capabilities = labeller.info.capabilities
    if (not has_molecules or any(atoms.pbc.any() for _, atoms in chosen)) and not capabilities.periodic:
        raise MlffcError(f"teacher '{teacher}' does not take periodic cells; crystals need one that does (mlffc teachers)")
    config = SamplingConfig(seed=seed, md_steps=md_steps if md_steps is not None else SAMPLING.md_steps if has_molecules else 0,
                            md_interval=md_interval, rattles_per_scale=rattles_per_scale,
                            strains_per_scale=strains_per_scale, mutants_per_seed=mutants_per_seed,
                            normal_modes_per_temperature=normal_modes if has_molecules else 0,
                            packed_systems=packed if packed is not None else 20 if has_molecules else 0,
                            spread_quantile=spread_quantile, hessian_vectors=hessian_vectors)
    if (config.normal_modes_per_temperature or hessian_vectors) and not capabilities.hessian:
        raise MlffcError(f"teacher '{teacher}' gives no Hessians: pass --normal-modes 0 and --hessian-vectors 0")
    if shards is None:
        _generate_file(out_path, spec, labeller, chosen, config, overwrite, seeds)
    else:
        _generate_shards(out_path, spec, labeller, chosen, config, overwrite, shards, shard, workers, scheduler)


def _check_generate_destination(out_path: Path, shards: int | None, shard: int | None, workers: int, scheduler: str | None) -> None:
    """--out is a file without --shards and a directory with them; shard options need --shards."""
    if shards is None and (shard is not None or workers > 1 or scheduler):
        raise MlffcError("--shard, --workers and --scheduler need --shards")
    if shards is None and out_path.is_dir():
        raise MlffcError(f"--out {out_path} is a directory: give an HDF5 file name, or --shards N to write shards into it")
    if shards is not None and out_path.exists() and not out_path.is_dir():
        raise MlffcError(f"--out {out_path} is a file: with --shards, --out names a directory for the shard files")
    if shards is not None and (shards < 1 or (shard is not None and not 0 <= shard < shards)):
        raise MlffcError(f"--shards must be 1 or more and --shard in 0..{(shards or 1) - 1}")


def _chosen_seeds(seeds: str, teacher: str, labeller, on_problem: str, limit: int | None, unseen_by: Path | None) -> list:
    """The seed groups to sample: loaded (problems listed), the first `limit`, and those sharing a
    scaffold family with `unseen_by`'s training data marked to stay in training."""
    from mlffc.data.seeds import first_groups, load_seeds, mark_seen_families

    loaded, problems = load_seeds(seeds, labeller.info.elements, on_problem, workers=len(os.sched_getaffinity(0)))
    _print_seed_problems(problems)
    chosen = first_groups(loaded, limit)
    if unseen_by is not None:
        from mlffc.students import load_student

        seen = set(load_student(unseen_by)[1].get("trained_families", []))
        if not seen:
            raise MlffcError(f"{unseen_by} records no training families (made by an older mlffc?): it cannot say what it saw")
        console.print(f"{mark_seen_families(chosen, seen)} of {len(chosen)} seeds share a scaffold family with "
                      f"{unseen_by.name}'s training data: kept in training")
    if not chosen:
        raise MlffcError(f"no usable seeds in {seeds!r} for teacher '{teacher}' (elements {', '.join(labeller.info.elements)})")
    return chosen


def _generate_file(out_path: Path, spec, labeller, chosen: list, config: SamplingConfig, overwrite: bool, seeds: str) -> None:
    """One HDF5 file; an existing one made with the same settings is kept."""
    from mlffc.data.generate import generate as run_generate
    from mlffc.data.shards import ShardJob, check_settings
    from mlffc.data.storage import write_frames

    if out_path.exists() and not overwrite:
        check_settings(out_path, ShardJob(spec, chosen, config, GENERATE_HOLDOUT, 1, out_path.parent).settings(labeller))
        out.print(f"{out_path} is up to date (same settings); --overwrite to make it again")
        return
    frames = run_generate(chosen, labeller, config, GENERATE_HOLDOUT)
    write_frames(out_path, frames)
    counts = {name: int((frames.split == k).sum()) for k, name in enumerate(("train", "val", "test"))}
    out.print(f"wrote {out_path}: {len(frames)} frames ({frames.attrs['shard']['labelled']} labelled), "
              f"{int(frames.natoms.sum())} atoms, {len(set(frames.group.tolist()))} groups from {len(chosen)} "
              f"{seeds} seeds, frames per split {counts}")


def _generate_shards(out_path: Path, spec, labeller, chosen: list, config: SamplingConfig, overwrite: bool, shards: int,
                     shard: int | None, workers: int, scheduler: str | None) -> None:
    """Shard files in the --out directory; finished shards with the same settings are skipped."""
    from mlffc.data.shards import ShardJob, finished_shards, run_shards

    job = ShardJob(spec, chosen, config, GENERATE_HOLDOUT, shards, out_path)
    if overwrite:
        for path in out_path.glob("shard-*.h5"):
            path.unlink()
    done = finished_shards(job, labeller)
    wanted = [shard] if shard is not None else list(range(shards))
    pending = [index for index in wanted if index not in done]
    if len(pending) < len(wanted):
        console.print(f"skipping {len(wanted) - len(pending)} finished shard(s) with the same settings")
    summaries = run_shards(job, pending, workers, scheduler)
    frames = sum(s["frames"] for s in summaries)
    seconds = max((s["seconds"] for s in summaries), default=0.0)
    out.print(f"wrote {len(summaries)} shard(s) to {out_path}: {frames:,} frames "
              f"({sum(s['labelled'] for s in summaries):,} labelled), {sum(s['atoms'] for s in summaries):,} atoms; "
              f"slowest shard {seconds:.0f} s")


data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")


@data_app.command("validate")
def validate_data(
    path: Path = typer.Argument(..., help="dataset: an HDF5 file, a directory of shards or a glob"),
    plot: Optional[Path] = typer.Option(None, help="write the distributions as a PNG"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the findings and summary as JSON"),
):
    """Check a dataset (NaN/inf, atoms too close, energy and force outliers, duplicates, elements
    against the teacher) and summarise it; exit 1 on any error."""
    from mlffc.data.storage import read_dataset
    from mlffc.data.validate import plot as plot_distributions, validate
    from mlffc.io import write_json

    with console.status(f"validating {path}"):
        frames = read_dataset(path)
        report = validate(frames)
    table = Table("check", "result", "detail", title=f"validate {path}")
    colour = {"ok": "green", "warning": "yellow", "error": "red"}
    for finding in report.findings:
        table.add_row(finding.check, f"[{colour[finding.level]}]{finding.level}[/]", finding.detail)
    out.print(table)
    summary = Table("", "", title="summary", show_header=False)
    for key, value in report.summary.items():
        text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()) \
            if isinstance(value, dict) else ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        summary.add_row(key, text)
    out.print(summary)
    if plot:
        plot_distributions(frames, report, plot)
    if json_path:
        write_json(json_path, {"findings": [vars(f) for f in report.findings], "summary": report.summary}, strict=False)
    if report.errors:
        out.print(f"[red]FAILED[/]: {len(report.errors)} check(s) found errors")
        raise typer.Exit(1)
    out.print("[green]PASSED[/]")


@data_app.command("import")
def import_data(
    files: list[Path] = typer.Argument(..., help="files ase.io.read reads (extxyz, ASE db, ...) with energy and forces"),
    out_path: Path = typer.Option(..., "--out", help="the mlffc-dataset HDF5 file to write"),
    label_source: str = typer.Option(..., help="where the labels come from, e.g. 'DFT (ORCA wB97X/6-31G*)'"),
    energy_key: Optional[str] = typer.Option(None, help="info key holding the energy (eV); default: the calculator's"),
    forces_key: Optional[str] = typer.Option(None, help="arrays key holding the forces (eV/Å); default: the calculator's"),
    stress_key: Optional[str] = typer.Option(None, help="info key holding the stress (eV/Å³); default: the calculator's"),
    accept_invalid_data: bool = flag(False, "--accept-invalid-data", help="write even data that validation rejects"),
):
    """Import labelled frames (eV, Å, eV/Å) into the mlffc-dataset format, validated like generated data."""
    from mlffc.data.exchange import import_frames
    from mlffc.data.storage import write_frames

    frames = import_frames(files, label_source, energy_key, forces_key, stress_key)
    _refuse_invalid_data(frames, ", ".join(map(str, files)), "write", accept_invalid_data)
    write_frames(out_path, frames)
    out.print(f"{out_path}: {len(frames)} frames, {int(frames.natoms.sum())} atoms, labels from {label_source}")


@data_app.command("export")
def export_data(
    path: Path = typer.Argument(..., help="dataset: an HDF5 file, a directory of shards or a glob"),
    target: Path = typer.Argument(..., help="the extxyz file to write"),
):
    """Write a dataset as extxyz (energy, forces and stress as calculator results)."""
    from mlffc.data.exchange import export_extxyz
    from mlffc.data.storage import read_dataset

    frames = read_dataset(path)
    export_extxyz(frames, target)
    out.print(f"{target}: {len(frames)} frames")


@app.command()
def train(
    config_path: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="YAML training config (defaults if omitted)"),
    data: Optional[Path] = typer.Option(None, help="labelled HDF5 (overrides the config's data)"),
    out_dir: Path = typer.Option(..., "--out", help="run directory: checkpoint, history, loss curve"),
    epochs: Optional[int] = typer.Option(None, help="override the config's epochs"),
    seed: Optional[int] = typer.Option(None, help="override the config's seed"),
    init: Optional[str] = typer.Option(None, help="start from this student checkpoint or bundled pretrained student "
                                       "(mlffc students), e.g. ani1x-moment; generate the data with --unseen-by it"),
    restart: bool = flag(False, help="start over instead of resuming the run in --out"),
    accept_invalid_data: bool = flag(False, "--accept-invalid-data",
                                             help="train even on data that `mlffc data validate` rejects"),
):
    """Distil the labels in DATA into a student (resumes an interrupted run in --out).
    Several processes: torchrun --nproc_per_node N -m mlffc train ..."""
    from dataclasses import replace

    from mlffc.trainers import TrainConfig, train as run_train

    _at_least(epochs=(epochs, 1))
    config = TrainConfig.from_file(config_path) if config_path else TrainConfig()
    overrides = {k: v for k, v in {"data": str(data) if data else None, "epochs": epochs, "seed": seed, "init": init}.items()
                 if v is not None}
    config = replace(config, **overrides)
    if not config.data:
        raise MlffcError("no training data: pass --data or set data in the config")
    from mlffc.data.storage import read_dataset

    _refuse_invalid_data(read_dataset(config.data), config.data, "train on", accept_invalid_data)
    _, result = run_train(config, out_dir, restart=restart)
    best = result["best"]
    out.print(f"best epoch {best['epoch']}: val force MAE {best['val_force_mae']:.4f} eV/Å, "
              f"energy MAE {1e3 * best['val_energy_mae_per_atom']:.2f} meV/atom -> {out_dir / 'student.safetensors'}")


@app.command(name="compile")
def compile_command(
    student: Optional[str] = typer.Argument(None, help="student checkpoint (.safetensors) or a bundled pretrained "
                                           "student's name (mlffc students), e.g. ani1x-moment"),
    target: str = typer.Option("cpu", help="compile target (mlffc targets)"),
    backend: Optional[str] = typer.Option(None, help="override the target's default backend; auto: lower with every backend "
                                          "installed for the target's device and keep the fastest that passes acceptance "
                                          "(the manifest's backend_selection records each one's ms and why it lost)"),
    threads: Optional[int] = typer.Option(None, help="CPU threads to build for (default: the target's)"),
    passes: Optional[str] = typer.Option(None, help="comma-separated passes instead of the target's (see docs/compiler.md)"),
    precision: Optional[str] = typer.Option(None, help="linear-layer precision instead of the target's: fp32, tf32, bf16, fp16"),
    data: Optional[Path] = typer.Option(None, help="labelled HDF5: accuracy vs the teacher on its test split"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="artifact directory to write"),
    plan_only: bool = flag(False, "--plan", help="print the pipeline and exit"),
):
    """Compile a student for a target into a checked, self-describing artifact."""
    from mlffc.compiler import AUTO, candidate_targets, compile_student, plan, plan_auto, resolve_target

    pass_list = [p.strip() for p in passes.split(",") if p.strip()] if passes is not None else None
    if backend == AUTO:
        resolved = candidate_targets(target, threads, pass_list, precision)
        steps = plan_auto(resolved)
    else:
        resolved = resolve_target(target, backend, threads, pass_list, precision)
        steps = plan(resolved)
    if plan_only:
        for k, step in enumerate(steps, 1):
            out.print(f"{k}. {step}")
        return
    if student is None or out_dir is None:
        raise MlffcError("compile needs a STUDENT checkpoint and --out (or --plan)")
    manifest = compile_student(student, resolved, out_dir, data)
    _print_manifest(manifest)


@app.command()
def check(
    artifact: Path = typer.Argument(..., help="artifact directory"),
    data: Optional[Path] = typer.Option(None, help="labelled data to check against: an mlffc HDF5 dataset, or a file "
                                        "ase.io reads with energy and forces (extxyz, ASE db; all its frames)"),
    reference_keys: Optional[str] = typer.Option(None, help="more references in an extxyz --data: ENERGY_KEY,FORCES_KEY "
                                                 "pairs (info/arrays keys), ';' between pairs, e.g. dft_energy,dft_forces"),
    split: str = typer.Option("test", help="split of DATA to use"),
    max_force_mae: float = typer.Option(LIMITS.force_mae, help="eV/Å"),
    max_energy_mae: float = typer.Option(LIMITS.energy_mae_per_atom, help="eV/atom"),
    plot: Optional[Path] = typer.Option(None, help="write a parity plot (PNG)"),
    md: bool = flag(False, "--md", help="also run NVE/NVT simulations with the artifact and the teacher"),
    teacher: Optional[str] = typer.Option(None, help="teacher for --md (default: the manifest's, else ani1x)"),
    md_molecule: str = typer.Option(MD.molecule, help="molecule for NVE in vacuum (ASE name)"),
    md_box: int = typer.Option(MD.box_molecules, help="water molecules in the periodic box"),
    md_steps: int = typer.Option(MD.nve_steps, help="NVE steps per system"),
    rdf_steps: int = typer.Option(MD.nvt_steps, help="NVT steps sampled for the RDF"),
    equilibration: int = typer.Option(MD.equilibration, help="NVT steps before sampling"),
    timestep: float = typer.Option(MD.timestep_fs, help="fs"),
    max_drift: float = typer.Option(MD_LIMITS.drift, help="eV/atom/ps, NVE energy drift of the artifact"),
    max_rdf_error: float = typer.Option(MD_LIMITS.rdf_error, help="mean |g_artifact - g_teacher| of the O-O RDF"),
    rdf_plot: Optional[Path] = typer.Option(None, help="write the O-O RDFs of --md (PNG)"),
    baseline: Optional[Path] = typer.Option(None, help="accuracy baseline (JSON, docs/artifacts.md) of an earlier check of the "
                                            "same --data: fail when a figure got worse than it beyond its tolerance"),
    write_baseline: Optional[Path] = typer.Option(None, help="write this check's --data figures as an accuracy baseline "
                                                  "(JSON, only if the check passes)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON"),
):
    """Compare an artifact with the teacher's labels and with its eager student (--data), and/or
    simulate with it and the teacher (--md); exit 1 on failure."""
    from mlffc.check import (artifact_source, check_artifact, check_md, check_same_data, compare_with_baseline, data_source,
                             make_baseline, read_baseline, write_baseline as write_baseline_file)
    from mlffc.io import write_json

    from mlffc.data.storage import SPLITS

    if data is None and not md:
        raise MlffcError("check needs --data (accuracy against labels), --md (simulations), or both")
    if (baseline or write_baseline) and data is None:
        raise MlffcError("--baseline and --write-baseline hold the figures of a --data check: give --data")
    if baseline and write_baseline:
        raise MlffcError("give --baseline (compare with a stored check) or --write-baseline (store this one), not both")
    if write_baseline and write_baseline.is_dir():
        raise MlffcError(f"--write-baseline {write_baseline} is a directory; give a file name (e.g. baseline.json)")
    if split not in SPLITS:
        raise MlffcError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    if not (timestep > 0 and timestep <= 10):
        raise MlffcError(f"--timestep must be > 0 and at most 10 fs, got {timestep}")
    _at_least(md_box=(md_box, 1), md_steps=(md_steps, 1), rdf_steps=(rdf_steps, 1), equilibration=(equilibration, 0))
    keys = _key_pairs(reference_keys)
    source = data_source(data, split, keys) if baseline or write_baseline else None
    stored = read_baseline(baseline) if baseline else None
    if stored:
        check_same_data(stored, source, baseline)
    report: dict = {"artifact": str(artifact), "failures": []}
    if data is not None:
        with console.status(f"checking {artifact} on the {split} split of {data}"):
            report = check_artifact(artifact, data, Limits(force_mae=max_force_mae, energy_mae_per_atom=max_energy_mae), split, plot,
                                    keys)
        _print_check(report)
    if stored:
        report["baseline"] = compare_with_baseline(report, stored, baseline)
        report["failures"] = report["failures"] + report["baseline"]["failures"]
        _print_baseline(report["baseline"])
    if md:
        settings = MdSettings(molecule=md_molecule, box_molecules=md_box, nve_steps=md_steps, nvt_steps=rdf_steps,
                              equilibration=equilibration, timestep_fs=timestep)
        report["md"] = check_md(artifact, teacher, settings, MdLimits(drift=max_drift, rdf_error=max_rdf_error), rdf_plot)
        report["failures"] = report["failures"] + report["md"]["failures"]
        _print_md(report["md"])
    report["passed"] = not report["failures"]
    if json_path:
        write_json(json_path, report, strict=False)
    out.print("[green]PASSED[/]" if report["passed"] else f"[red]FAILED[/]: {'; '.join(report['failures'])}")
    if write_baseline and report["passed"]:
        write_baseline_file(write_baseline, make_baseline(report, artifact_source(artifact), source))
        out.print(f"accuracy baseline written to {write_baseline}")
    elif write_baseline:
        out.print(f"no baseline written to {write_baseline}: the check failed")
    if not report["passed"]:
        raise typer.Exit(1)


@app.command()
def distill(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="YAML recipe (docs/training.md); the bundled "
                                       "one: toolchain/configs/distill.yaml"),
    workdir: Path = typer.Option(..., help="where seeds, data, runs and distill.json go; a re-run resumes"),
    fresh: bool = flag(False, help="delete this workdir's data and record and start over"),
):
    """Seeds -> teacher labels -> student -> rounds of the student's own MD, the frames it is least
    sure of labelled by the teacher and trained on (resumes an interrupted loop)."""
    from mlffc.trainers.loop import DistillConfig, run_distill

    record = run_distill(DistillConfig.from_file(config_path), workdir, fresh)
    table = Table("round", "frames", "added", "MD ended early", "val force MAE", "val energy MAE", "test force MAE",
                  title=f"distill {workdir}")
    for entry in record["rounds"]:
        added = entry.get("added", {})
        table.add_row(str(entry["round"]), f"{entry['frames']:,}",
                      f"{added['added']:,} of {added['candidates']:,}" if added else "",
                      f"{added['unstable']} of {added['trajectories']}" if added else "",
                      f"{entry['val']['all']['force_mae']:.4f} eV/Å", f"{1e3 * entry['val']['all']['energy_mae_per_atom']:.2f} meV/atom",
                      f"{entry['test']['all']['force_mae']:.4f} eV/Å")
    out.print(table)
    out.print(f"student: {record['best']}")


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo"), help="where data, run and artifact go"),
    fresh: bool = flag(False, help="redo every step instead of reusing finished ones"),
    from_scratch: bool = flag(False, help="train a new student instead of fine-tuning the bundled pretrained one"),
):
    """The whole pipeline on the bundled ANI-1x teacher: generate, train (fine-tune the bundled
    pretrained student), compile for cpu, check, report. The report shows the check's verdict;
    `mlffc check` is the command that gates (exit 1)."""
    from mlffc.demo import run_demo

    run_demo(workdir, fresh, from_scratch)


def _at_least(**options: tuple[int | None, int]) -> None:
    """Refuse an integer option below its least allowed value, naming it (None: not given)."""
    for name, (value, least) in options.items():
        if value is not None and value < least:
            raise MlffcError(f"--{name.replace('_', '-')} must be {least} or more, got {value}")


def _key_pairs(text: str | None) -> list[tuple[str, str]]:
    """`--reference-keys` 'E,F;E2,F2' as [(E, F), (E2, F2)]."""
    pairs = []
    for part in (text or "").split(";"):
        if part.strip():
            keys = [k.strip() for k in part.split(",")]
            if len(keys) != 2 or not all(keys):
                raise MlffcError(f"--reference-keys: '{part}' is not ENERGY_KEY,FORCES_KEY")
            pairs.append((keys[0], keys[1]))
    return pairs


def _refuse_invalid_data(frames, name: str, action: str, accept: bool) -> None:
    """Run `mlffc data validate`'s checks on `frames` (read from `name`); refuse data they reject
    before `action` ('train on', 'write') unless told to accept it."""
    from mlffc.data.validate import validate

    with console.status(f"validating {name}"):
        errors = validate(frames).errors
    if not errors:
        return
    found = "; ".join(f"{f.check}: {f.detail}" for f in errors)
    if not accept:
        raise MlffcError(f"{name} fails validation ({found}); nothing done: see `mlffc data validate`, "
                         f"or pass --accept-invalid-data to {action} it anyway")
    console.print(f"[yellow]{name} fails validation; going on to {action} it (--accept-invalid-data): {found}[/]")


def _print_seed_problems(problems) -> None:
    """Seed entries left out, first few named, so a user sees what was skipped and why."""
    if not problems:
        return
    shown = 10
    console.print(f"[yellow]skipped {len(problems)} seed entr{'y' if len(problems) == 1 else 'ies'} "
                  f"(--on-problem refuse stops instead):[/]")
    for problem in problems[:shown]:
        console.print(f"  {problem}")
    if len(problems) > shown:
        console.print(f"  ... and {len(problems) - shown} more")


def _print_manifest(manifest: Manifest) -> None:
    """A compiled artifact's manifest (as compile returns it: with its accuracy and speed)."""
    table = Table("", "", title=f"artifact for {manifest.target.name} ({manifest.backend.name})", show_header=False)
    eager = manifest.accuracy.vs_eager
    table.add_row("compiled vs eager", f"max |dF| {eager.max_forces_error:.2e} eV/Å (relative above 1 eV/Å), max |dE| {eager.max_abs_energy_per_atom:.2e} eV/atom")
    teacher = manifest.accuracy.vs_teacher
    if teacher:
        table.add_row("vs teacher (test)", f"force MAE {teacher.force_mae:.4f} eV/Å, energy MAE {1e3 * teacher.energy_mae_per_atom:.2f} meV/atom")
    speed = manifest.speed
    table.add_row(f"speed, {speed.atoms} atoms", f"compiled {speed.compiled_ms:.2f} ms, eager {speed.eager_ms:.2f} ms ({speed.speedup_vs_eager:.1f}x)")
    for record in manifest.passes:
        verdict = "applied" if record.applied else f"[yellow]rejected[/] ({record.rejected})"
        table.add_row(f"pass {record.name}", f"{verdict}; max |dF| {record.error.forces if record.error else 0:.1e} eV/Å")
    for trial in manifest.backend_selection or ():
        table.add_row(f"backend {trial.backend}", trial.status + (f", {trial.ms:.2f} ms" if trial.ms is not None else "")
                      + (f" ({trial.reason})" if trial.reason else ""))
    table.add_row("compile time", f"{manifest.compile_seconds:.0f} s")
    out.print(table)


def _print_check(report: dict) -> None:
    t, e = report["vs_teacher"], report["vs_eager"]
    table = Table("metric", "value", "limit", title=f"check {report['artifact']} on {report['frames']} {report['split']} frames")
    limits = report["limits"]
    against = report.get("labels", "teacher")
    table.add_row(f"force MAE vs {against}", f"{t['force_mae']:.4f} eV/Å", f"{limits['force_mae']:.4f}")
    table.add_row(f"force RMSE vs {against}", f"{t['force_rmse']:.4f} eV/Å", "")
    table.add_row(f"energy MAE vs {against}", f"{1e3 * t['energy_mae_per_atom']:.2f} meV/atom", f"{1e3 * limits['energy_mae_per_atom']:.2f}")
    for name, r in report.get("vs_references", {}).items():
        table.add_row(f"vs reference {name} (not gated)", f"force MAE {r['force_mae']:.4f} eV/Å, energy "
                      f"{1e3 * r['energy_mae_per_atom']:.2f} meV/atom", "")
    for name, entry in report.get("by_category", {}).items():
        if name != "all":
            stress = f", stress {100 * entry['stress_relative_error']:.1f}%" if "stress_relative_error" in entry else ""
            table.add_row(f"  {name} ({entry['frames']} frames)", f"force MAE {entry['force_mae']:.4f} eV/Å, energy "
                          f"{1e3 * entry['energy_mae_per_atom']:.2f} meV/atom{stress}", "")
    table.add_row("compiled vs eager, forces (relative above 1 eV/Å)", f"{e['forces']:.2e} eV/Å", f"{limits['compiled_vs_eager_forces']:.1e}")
    table.add_row("compiled vs eager, energy", f"{e['energy_per_atom']:.2e} eV/atom", f"{limits['compiled_vs_eager_energy_per_atom']:.1e}")
    out.print(table)


def _print_baseline(comparison: dict) -> None:
    tolerance = comparison["tolerance"]
    table = Table("group", "figure", "baseline", "now", "change", "allowed", "",
                  title=f"against the baseline {comparison['file']} (made {comparison['created']} by mlffc {comparison['mlffc']}; "
                        f"allowed: baseline + {100 * tolerance['relative']:g}%, at least + the absolute floor)")
    for row in comparison["rows"]:
        scale, unit, digits = (1e3, "meV/atom", 2) if row["unit"] == "eV/atom" else (1.0, row["unit"], 4)
        change = row["measured"] - row["baseline"]
        relative = f" ({100 * change / row['baseline']:+.1f}%)" if row["baseline"] > 0 else ""
        table.add_row(row["group"], f"{row['metric']} ({unit})", f"{scale * row['baseline']:.{digits}f}",
                      f"{scale * row['measured']:.{digits}f}", f"{scale * change:+.{digits}f}{relative}",
                      f"{scale * row['allowed']:.{digits}f}", "[red]REGRESSED[/]" if row["regressed"] else "[green]ok[/]")
    (out if out.is_terminal else Console(width=200)).print(table)  # a CI log's default 80 columns would squash it


def _print_md(report: dict) -> None:
    runs, limits = report["runs"], report["limits"]
    table = Table("run", "artifact", f"teacher ({report['teacher']})", "limit", title=f"MD check of {report['artifact']}")
    for system in ("nve_molecule", "nve_box"):
        a, t = runs["artifact"][system], runs["teacher"][system]
        table.add_row(f"{system}: {a['atoms']} atoms, {a['duration_ps']:.2f} ps, drift (eV/atom/ps)",
                      _drift(a), _drift(t), f"{limits['drift']:.1e}")
        table.add_row(f"{system}: steps/s", f"{a['steps_per_s']:.0f}", f"{t['steps_per_s']:.0f}", "")
    a, t = runs["artifact"]["nvt_box"], runs["teacher"]["nvt_box"]
    table.add_row(f"nvt_box: {a['atoms']} atoms, mean T (K)", f"{a.get('temperature_mean_K', float('nan')):.0f}",
                  f"{t.get('temperature_mean_K', float('nan')):.0f}", "")
    table.add_row("O-O RDF, mean |g_artifact - g_teacher|", f"{report['rdf_error']:.3f}", "", f"{limits['rdf_error']:.3f}")
    out.print(table)


def _drift(run: dict) -> str:
    return f"{run['drift_ev_per_atom_per_ps']:.2e}" if run["stable"] else f"[red]{run['failure']}[/]"


def main() -> None:
    try:
        app()
    except MlffcError as error:
        console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)
