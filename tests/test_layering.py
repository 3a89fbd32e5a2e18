"""Dependencies point one way. Every module's `mlffc` imports (module level and inside functions)
are read with `ast` and each part may import only the parts its rule allows: teachers know nothing
of students, the runtime that loads an artifact nothing of teachers, data, trainers or the
compiler, and the gate (check) nothing of what it gates (compiler, passes, targets, capture)."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tree's folders and the import packages they hold (pyproject.toml's package-dir).
ROOTS = {"toolchain": "mlffc", "passes": "mlffc.passes", "targets": "mlffc.targets", "trainers": "mlffc.trainers"}

BASE = {"errors", "units", "io", "timing", "progress"}
ALLOWED = {
    "mlffc": set(), "errors": set(), "units": set(), "timing": set(), "progress": set(),  # mlffc: the package (its version)
    "io": {"errors"},
    "structures": {"errors", "units"},
    "graph": {"errors", "structures"},
    "ops": {"errors"},
    "plots": {"io"},
    "metrics": {"graph"},
    "teachers": BASE | {"structures"},
    "students": BASE | {"graph"},
    "capture": BASE | {"graph", "students"},
    "passes": BASE | {"graph", "metrics", "ops"},
    "targets": BASE | {"graph", "ops"},
    "runtime": BASE | {"graph", "structures", "ops"},
    "data": BASE | {"graph", "structures", "plots", "teachers"},
    "md": BASE | {"data", "structures"},
    "trainers": BASE | {"data", "graph", "metrics", "plots", "structures", "students", "teachers"},
    "check_settings": set(),
    "check": BASE | {"check_settings", "data", "md", "metrics", "mlffc", "plots", "runtime", "structures", "students", "teachers"},
    "acceptance": BASE | {"capture", "data", "graph", "metrics", "passes", "runtime", "students"},
    "compiler": BASE | {"acceptance", "capture", "data", "graph", "metrics", "mlffc", "passes", "runtime", "students", "targets"},
    "demo": None, "cli": None, "__main__": None,  # entry points: may import any part
}


def _part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "mlffc"


def imports(repo: Path = REPO) -> dict[str, set[tuple[str, str]]]:
    """Per part: (importing module, imported mlffc module) pairs, across parts."""
    found: dict[str, set[tuple[str, str]]] = {}
    for root, package in ROOTS.items():
        for path in (repo / root).rglob("*.py"):
            module = ".".join([package, *path.relative_to(repo / root).with_suffix("").parts]).removesuffix(".__init__")
            found.setdefault(_part(module), set())
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [f"{node.module}.{a.name}" if node.module == "mlffc" else node.module for a in node.names]
                else:
                    continue
                for name in names:
                    if (name == "mlffc" or name.startswith("mlffc.")) and _part(name) != _part(module):
                        found[_part(module)].add((module, name))
    return found


def violations(repo: Path = REPO) -> list[str]:
    """Imports that break ALLOWED, and parts without a rule."""
    problems = []
    for part, pairs in sorted(imports(repo).items()):
        if part not in ALLOWED:
            problems.append(f"{part} has no rule in ALLOWED")
        elif ALLOWED[part] is not None:
            problems += [f"{module} imports {name}" for module, name in sorted(pairs) if _part(name) not in ALLOWED[part]]
    return problems


def test_every_part_imports_only_what_its_rule_allows():
    assert violations() == []


def test_a_wrong_way_import_is_found(tmp_path):
    (tmp_path / "toolchain" / "runtime").mkdir(parents=True)
    (tmp_path / "toolchain" / "check.py").write_text("def f():\n    from mlffc.compiler import compile_student\n")
    (tmp_path / "toolchain" / "runtime" / "model.py").write_text("import mlffc.teachers.fennol\nfrom mlffc import trainers\n")
    (tmp_path / "toolchain" / "newpart.py").write_text("import mlffc.errors\n")
    assert violations(tmp_path) == ["mlffc.check imports mlffc.compiler", "newpart has no rule in ALLOWED",
                                    "mlffc.runtime.model imports mlffc.teachers.fennol", "mlffc.runtime.model imports mlffc.trainers"]


def test_teachers_import_no_torch_at_import_time():
    """The FeNNol teachers run on JAX: importing them must not pull torch (or any student)."""
    script = "import sys, mlffc.teachers, mlffc.teachers.fennol; print('\\n'.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split())
    assert not {m for m in loaded if m.startswith(("mlffc.students", "mlffc.trainers", "mlffc.runtime", "torch"))}
