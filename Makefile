# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite; CI runs it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench cpp lammps clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/mlffc demo --workdir demo

test: install
	$(BIN)/python -m pytest -q --cov --cov-report=term

bench: install
	$(BIN)/python bench/bench_teachers.py --write docs/teachers.md

# The C++ runtime (runtime-cpp/) against the wheel's libtorch: build/runtime-cpp/{libmlffc.so,mlffc-run}
cpp: install
	$(BIN)/python -m mlffc.runtime.build_cpp

# pair_style mlffc for LAMMPS (lammps-plugin/, over libmlffc; docs/lammps.md): build/lammps-plugin/mlffc_lammps.so
lammps: install
	$(BIN)/python -m mlffc.runtime.build_lammps

clean:
	rm -rf $(VENV) demo .pytest_cache build
