"""The manifest schema (toolchain/runtime/manifest.py): one writer and one reader that refuses,
naming the field, anything missing, mistyped, unknown or non-finite, and any other schema version;
a manifest the compiler writes reads back equal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import replace

import pytest
import torch

from mlffc.errors import MlffcError
from mlffc.runtime.manifest import (MANIFEST, SCHEMA_VERSION, STUDENT_FILE, Accuracy, BackendInfo, BackendTrial, Capabilities, Checkpoint, DeviceInfo,
                                    Difference, GraphTime, Manifest, ModelInfo, PassRecord, Speed, TargetInfo, VsEager, VsTeacher,
                                    check_compatible, host_description, verify_payload)

ENTRY, ENTRY_BYTES = "model.pt2", b"compiled graph"
STUDENT_BYTES = b"student weights"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def full_manifest() -> Manifest:
    """A manifest with every optional field set (finite, distinct numbers)."""
    host = host_description()
    return Manifest(
        schema_version=SCHEMA_VERSION, created="2026-12-04T12:00:00+00:00", mlffc="0.1.0",
        target=TargetInfo(name="cpu", device="cpu", backend="aoti", backends=("aoti", "onnxruntime"), description="this CPU",
                          arch=None, precision="fp32", passes=("fold_constants",), threads=1,
                          settings={"budgets": {"fold_constants": {"energy_per_atom": 1e-5, "forces": 1e-4, "teacher_force_mae": 1e-3}}}),
        backend=BackendInfo(name="aoti", entry=ENTRY, libraries=(), versions={"torch": torch.__version__}, facts={"note": [1, 2.5]},
                            torch=torch.__version__),
        built_on=replace(host, cuda="12.8", gpu="NVIDIA H100", gpu_arch="sm_90"),
        device=DeviceInfo(kind="cpu", arch=host.cpu_capability, name=host.machine),
        precision="fp32",
        passes=(PassRecord(name="fold_constants", stage="energy", seconds=0.25, applied=True,
                           error=Difference(energy_per_atom=1e-7, forces=2e-6, teacher_force_mae=-1e-6),
                           budget=Difference(energy_per_atom=1e-5, forces=1e-4, teacher_force_mae=1e-3),
                           vs_student=Difference(energy_per_atom=3e-7, forces=4e-6), teacher_force_mae=0.12,
                           graph_ms=GraphTime(before=5.5, after=4.5)),
                PassRecord(name="quantize_weights", stage="joint", seconds=0.5, applied=False, rejected="over budget: forces 0.1 > 0.01")),
        payload={ENTRY: _sha(ENTRY_BYTES)},
        model=ModelInfo(architecture="moment", config={"channels": 8, "cutoff": 5.0}, parameters=1234, species=(1, 6, 7, 8), cutoff=5.0,
                        checkpoint=Checkpoint(file=STUDENT_FILE, sha256=_sha(STUDENT_BYTES)), teacher={"name": "ani1x"}),
        units={"energy": "eV", "length": "Angstrom"}, inputs=("positions", "species"), outputs=("energy", "forces"),
        signature={"inputs": [{"name": "positions", "shape": ["atoms", 3]}]},
        capabilities=Capabilities(periodic=True, stress=True),
        accuracy=Accuracy(vs_eager=VsEager(max_abs_energy_per_atom=1e-6, max_forces_error=1e-4,
                                           tolerance=Difference(energy_per_atom=1e-4, forces=2e-3),
                                           float32_rounding=Difference(energy_per_atom=2e-7, forces=3e-5)),
                          vs_teacher=VsTeacher(split="test", frames=20, energy_mae_per_atom=0.01, energy_rmse_per_atom=0.02,
                                               force_mae=0.1, force_rmse=0.2, force_max_error=1.5)),
        speed=Speed(system="100-molecule H2O cluster", atoms=300, edges=9000, threads=1, compiled_ms=2.0, eager_ms=6.0, speedup_vs_eager=3.0),
        compile_seconds=42.0,
        backend_selection=(BackendTrial(backend="aoti", status="chosen", accepted=True, ms=2.0, reason=None),
                           BackendTrial(backend="onnxruntime", status="slower", accepted=True, ms=3.5, reason="slower: 3.500 ms vs 2.000 ms (aoti)"),
                           BackendTrial(backend="tvm", status="failed acceptance", accepted=False, ms=None,
                                        reason="failed acceptance: max |dF| 0.1 > 0.002"),
                           BackendTrial(backend="tensorrt", status="not installed", accepted=False, ms=None, reason="not installed")),
    )


def _leaves(section, where=""):
    """(dotted path, declared type, value) of every field of a section, sections followed, list
    items of sections followed by index."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        path, value = f"{where}.{f.name}" if where else f.name, getattr(section, f.name)
        yield path, hints[f.name], value, f.default is dataclasses.MISSING
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, path)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for k, item in enumerate(value):
                yield from _leaves(item, f"{path}[{k}]")


def _edit(data: dict, path: str, change) -> dict:
    """A copy of data with change(parent, key) applied at the dotted path (list items as [k])."""
    data = json.loads(json.dumps(data))
    parent, parts = data, path.replace("[", ".[").split(".")
    for part in parts[:-1]:
        parent = parent[int(part[1:-1])] if part.startswith("[") else parent[part]
    key = parts[-1]
    change(parent, int(key[1:-1]) if key.startswith("[") else key)
    return data


def _wrong_value(kind):
    """A JSON value that is not of the declared type."""
    if typing.get_origin(kind) is typing.Union or type(None) in typing.get_args(kind):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is str:
        return 7
    if kind in (int, float):
        return "7"
    if kind is bool:
        return 1
    return "not an object or a list"


FIELDS = list(_leaves(full_manifest()))
REQUIRED = [path for path, _, _, required in FIELDS if required]
NUMBERS = [path for path, kind, value, _ in FIELDS if isinstance(value, float)]


def test_round_trip_through_json_and_a_file(tmp_path):
    manifest = full_manifest()
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert manifest.write(tmp_path) == manifest
    assert Manifest.read(tmp_path) == manifest
    assert json.loads((tmp_path / MANIFEST).read_text()) == manifest.to_dict()


def test_optional_fields_are_left_out_and_read_back_as_none(tmp_path):
    bare = replace(full_manifest(), accuracy=None, speed=None, compile_seconds=None, backend_selection=None, built_on=host_description())
    written = bare.to_dict()
    assert not {"accuracy", "speed", "compile_seconds", "backend_selection"} & set(written)
    # a record without measurements; teacher_force_mae is null (as the pass manager writes it), not left out
    assert set(written["passes"][1]) == {"name", "stage", "seconds", "applied", "rejected", "teacher_force_mae"}
    assert "teacher_force_mae" not in written["passes"][0]["vs_student"]
    assert written["target"]["arch"] is None  # a field that is null, not left out
    assert Manifest.from_dict(written) == bare


@pytest.mark.parametrize("path", REQUIRED)
def test_a_missing_field_is_named(path):
    data = _edit(full_manifest().to_dict(), path, lambda parent, key: parent.pop(key))
    message = "schema_version must be the integer" if path == "schema_version" else f"manifest has no {path} "
    with pytest.raises(MlffcError, match=f"^{MANIFEST}: {message}".replace("[", r"\[")):
        Manifest.from_dict(data)


@pytest.mark.parametrize("path,kind", [(path, kind) for path, kind, _, _ in FIELDS if path != "schema_version"])
def test_a_mistyped_field_is_named(path, kind):
    data = _edit(full_manifest().to_dict(), path, lambda parent, key: parent.__setitem__(key, _wrong_value(kind)))
    with pytest.raises(MlffcError, match=f"manifest field {path} must be ".replace("[", r"\[")):
        Manifest.from_dict(data)


@pytest.mark.parametrize("path,bad", [("model.species[1]", "C"), ("model.species[1]", 6.5), ("backend.libraries[0]", 3),
                                      ("payload['model.pt2']", 5), ("backend.versions['torch']", None), ("capabilities.stress", 0),
                                      ("target.threads", True), ("speed.atoms", 300.0)])
def test_a_mistyped_item_is_named(path, bad):
    data = full_manifest().to_dict()
    data["backend"]["libraries"] = ["lib.so"]
    data["payload"]["lib.so"] = _sha(b"lib")
    parts = {"model.species[1]": ("model", "species", 1), "backend.libraries[0]": ("backend", "libraries", 0),
             "payload['model.pt2']": ("payload", ENTRY), "backend.versions['torch']": ("backend", "versions", "torch"),
             "capabilities.stress": ("capabilities", "stress"), "target.threads": ("target", "threads"), "speed.atoms": ("speed", "atoms")}[path]
    parent = data
    for key in parts[:-1]:
        parent = parent[key]
    parent[parts[-1]] = bad
    with pytest.raises(MlffcError, match=f"manifest field {path} must be ".replace("[", r"\[")):
        Manifest.from_dict(data)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("path", NUMBERS + ["target.settings.budgets.fold_constants.forces", "backend.facts.note[1]"])
def test_a_non_finite_number_is_named(path, bad):
    data = _edit(full_manifest().to_dict(), path, lambda parent, key: parent.__setitem__(key, bad))
    with pytest.raises(MlffcError, match=f"manifest field {path} is {bad} ".replace("[", r"\[")):
        Manifest.from_dict(data)


def test_the_example_of_the_brief_reads_as_it_says():
    data = _edit(full_manifest().to_dict(), "accuracy.vs_eager.tolerance.forces", lambda parent, key: parent.__setitem__(key, float("nan")))
    with pytest.raises(MlffcError, match="accuracy.vs_eager.tolerance.forces is nan"):
        Manifest.from_dict(data)


def test_non_finite_json_tokens_in_a_file_are_refused(tmp_path):
    text = json.dumps(full_manifest().to_dict()).replace('"compile_seconds": 42.0', '"compile_seconds": NaN')
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(MlffcError, match=f"{tmp_path / MANIFEST}: manifest field compile_seconds is nan"):
        Manifest.read(tmp_path)


@pytest.mark.parametrize("version,message", [(1, "schema 1 is older than this mlffc reads .*recompile"),
                                             (3, "schema 3 is newer than this mlffc reads .*upgrade mlffc"),
                                             ("2", "schema_version must be the integer 2, got '2'"),
                                             (True, "schema_version must be the integer 2, got True"),
                                             (2.0, "schema_version must be the integer 2, got 2.0")])
def test_another_schema_version_is_refused(version, message):
    with pytest.raises(MlffcError, match=message):
        Manifest.from_dict({**full_manifest().to_dict(), "schema_version": version})


@pytest.mark.parametrize("path", ["note", "accuracy.note", "passes[0].extra", "model.checkpoint.size"])
def test_an_unknown_field_is_refused(path):
    *parent, key = path.split(".")
    data = _edit(full_manifest().to_dict(), ".".join(parent) or key, lambda p, k: None)
    target = data
    for part in parent:
        target = target["passes"][0] if part == "passes[0]" else target[part]
    target[key] = 1
    with pytest.raises(MlffcError, match=f"manifest field {path} is not in schema 2".replace("[", r"\[")):
        Manifest.from_dict(data)


@pytest.mark.parametrize("change,message", [
    (lambda m: m["target"].update(device="tpu"), "target.device must be cpu or cuda, got 'tpu'"),
    (lambda m: m["target"].update(threads=0), "target.threads must be >= 1, got 0"),
    (lambda m: m["model"].update(cutoff=0.0), "model.cutoff must be finite and > 0"),
    (lambda m: m["model"].update(species=[]), "model.species must be a non-empty list"),
    (lambda m: m["model"].update(species=[1, 119]), "model.species must be a non-empty list of atomic numbers 1-118"),
    (lambda m: m["payload"].update({ENTRY: "ABC"}), "payload hash of 'model.pt2' must be a SHA-256 in hex"),
    (lambda m: m["model"]["checkpoint"].update(sha256="0" * 63), "model.checkpoint.sha256 must be a SHA-256 in hex"),
    (lambda m: m["backend"].update(entry="other.pt2"), "'other.pt2' .* is not listed in payload"),
    (lambda m: m["backend"].update(libraries=["ops.so"]), "'ops.so' .* is not listed in payload"),
    (lambda m: m["backend_selection"][2].update(status="lost"), r"backend_selection\[2\] \(tvm\): status must be one of chosen, "),
    (lambda m: m["backend_selection"][2].update(accepted=True), r"backend_selection\[2\] \(tvm\): accepted is True but status"),
    (lambda m: m["backend_selection"][1].update(ms=None), r"backend_selection\[1\] \(onnxruntime\): ms must be a time > 0"),
    (lambda m: m["backend_selection"][1].update(ms=0.0), r"backend_selection\[1\] \(onnxruntime\): ms must be a time > 0"),
    (lambda m: m["backend_selection"][2].update(ms=1.0), r"backend_selection\[2\] \(tvm\): ms must be .* null otherwise"),
    (lambda m: m["backend_selection"][3].update(reason=None), r"backend_selection\[3\] \(tensorrt\): reason must be null for the chosen"),
    (lambda m: m["backend_selection"][0].update(reason="fastest"), r"backend_selection\[0\] \(aoti\): reason must be null"),
    (lambda m: m["backend_selection"][1].update(status="chosen", reason=None), "must choose exactly one backend, the artifact's"),
    (lambda m: m["backend_selection"][0].update(backend="tvm"), r"must choose exactly one backend, the artifact's \(aoti\)"),
    (lambda m: m["backend_selection"][1].update(ms=1.5), "lists an accepted backend faster than the chosen aoti"),
])
def test_values_the_runtimes_rely_on_are_checked(change, message):
    data = full_manifest().to_dict()
    change(data)
    with pytest.raises(MlffcError, match=message):
        Manifest.from_dict(data)


def test_a_file_that_is_not_a_manifest(tmp_path):
    with pytest.raises(MlffcError, match="artifact not found"):
        Manifest.read(tmp_path / "nothing")
    with pytest.raises(MlffcError, match="is not an mlffc artifact: it has no manifest.json"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST).write_text('{"schema_version": 2,')
    with pytest.raises(MlffcError, match="is not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST).write_text("[2]")
    with pytest.raises(MlffcError, match="is not a JSON object .*list"):
        Manifest.read(tmp_path)


def test_the_writer_refuses_what_the_reader_would_and_writes_nothing(tmp_path):
    bad = replace(full_manifest(), speed=replace(full_manifest().speed, compiled_ms=float("nan")))
    with pytest.raises(MlffcError, match="speed.compiled_ms is nan"):
        bad.write(tmp_path)
    assert not (tmp_path / MANIFEST).exists()


def test_payload_hashes_and_host_checks_read_the_object(tmp_path):
    manifest = full_manifest()
    (tmp_path / ENTRY).write_bytes(ENTRY_BYTES)
    (tmp_path / STUDENT_FILE).write_bytes(STUDENT_BYTES)
    verify_payload(tmp_path, manifest)
    check_compatible(replace(manifest, built_on=host_description()))
    (tmp_path / STUDENT_FILE).write_bytes(b"other weights")
    with pytest.raises(MlffcError, match=f"payload file {STUDENT_FILE} does not match its SHA-256"):
        verify_payload(tmp_path, manifest)
    with pytest.raises(MlffcError, match="artifact built with torch 2.99.0, .*rebuild it here with `mlffc compile --target cpu`"):
        check_compatible(replace(manifest, built_on=replace(host_description(), torch="2.99.0")))


def test_a_manifest_the_compiler_writes_reads_back_equal(tmp_path):
    """compiler._manifest on a small random student, with pass records measured on a small labelled
    calibration set (no lowering: the payload is a stand-in file), then the fields compile adds
    after its checks."""
    import numpy as np

    from mlffc.capture import example_graph
    from mlffc.compiler import _manifest, optimize, pass_settings, resolve_target
    from mlffc.passes import Calibration
    from mlffc.students import build_student, save_student
    from mlffc.targets.backends import Payload, get_backend

    torch.manual_seed(0)
    student = build_student("moment", species=[1, 6, 7, 8], channels=8, hidden=[16]).eval()
    save_student(student, tmp_path / STUDENT_FILE)
    target = resolve_target("cpu", passes=["remove_identity_ops", "fold_constants", "remove_dead_code"])
    graph = example_graph(student, sizes=(3, 17, 5), seed=1)
    labels = (np.zeros(graph.num_structures), np.zeros(tuple(graph.positions.shape)))
    calibration = Calibration([graph], [labels], timing=graph)
    _, records = optimize(student, example_graph(student), target.passes, pass_settings(target), calibration)
    (tmp_path / ENTRY).write_bytes(ENTRY_BYTES)
    teacher = {"name": "ani1x", "elements": ["H", "C", "N", "O"]}
    written = _manifest(student, {"teacher": teacher}, target, get_backend("aoti"), Payload(tmp_path / ENTRY), records, tmp_path).write(tmp_path)
    assert Manifest.read(tmp_path) == written
    assert [p.name for p in written.passes] == list(target.passes)
    assert all(p.error.teacher_force_mae is not None and p.graph_ms.after > 0 for p in written.passes)
    assert written.model.species == (1, 6, 7, 8) and written.model.teacher_name == "ani1x"
    assert written.target.passes == target.passes and written.accuracy is None
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk["passes"] == records  # the pass records as the pass manager made them
    assert on_disk["target"] == json.loads(json.dumps(target.as_dict()))
    finished = replace(written, accuracy=full_manifest().accuracy, speed=full_manifest().speed, compile_seconds=12.5).write(tmp_path)
    assert Manifest.read(tmp_path) == finished
    verify_payload(tmp_path, finished)
    check_compatible(finished)
