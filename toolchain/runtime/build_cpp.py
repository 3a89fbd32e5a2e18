"""Build the C++ runtime (runtime-cpp/: library libmlffc, runner mlffc-run) with CMake against the
libtorch inside the installed torch wheel, so it loads the same artifacts as this Python.

    python -m mlffc.runtime.build_cpp [--build-dir build/runtime-cpp]   (what `make cpp` runs)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from mlffc.errors import MlffcError

SOURCE = Path(__file__).resolve().parents[2] / "runtime-cpp"
DEFAULT_BUILD = SOURCE.parent / "build" / "runtime-cpp"
RUNNER = "mlffc-run"


def missing_tools() -> str | None:
    """What the build needs and this machine lacks (None when cmake and a C++ compiler are here)."""
    if shutil.which("cmake") is None:
        return "cmake is not installed"
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++ or clang++) is installed"
    return None


def build_cpp(build_dir: Path = DEFAULT_BUILD, jobs: int | None = None, quiet: bool = False) -> Path:
    """Configure and build (incrementally when `build_dir` holds an earlier build); returns the
    runner's path. Raises MlffcError with cmake's output when a step fails."""
    if not (SOURCE / "CMakeLists.txt").is_file():
        raise MlffcError(f"C++ runtime sources not found at {SOURCE}: build from a checkout of the mlffc repository")
    missing = missing_tools()
    if missing:
        raise MlffcError(f"cannot build the C++ runtime: {missing}")
    build_dir = Path(build_dir)
    steps = [
        ["cmake", "-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        ["cmake", "--build", str(build_dir), "--parallel", str(jobs or os.cpu_count() or 1)],
    ]
    for command in steps:
        result = subprocess.run(command, capture_output=quiet, text=True)
        if result.returncode != 0:
            raise MlffcError(f"`{' '.join(command)}` failed:\n{(result.stdout or '') + (result.stderr or '')}")
    return build_dir / RUNNER


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlffc.runtime.build_cpp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD, help=f"default: {DEFAULT_BUILD}")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: all cores)")
    args = parser.parse_args(argv)
    try:
        runner = build_cpp(args.build_dir, args.jobs)
    except MlffcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"built {runner} and {runner.parent / 'libmlffc.so'}")


if __name__ == "__main__":
    main()
