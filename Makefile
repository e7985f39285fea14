# Two commands on a fresh machine: `make run` (the daemon on its embedded defaults) and `make test`.
# Each does its own set-up: a venv in .venv, an editable install, and the Cython modules in ext/ built in place.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXT := src/mqhook/.ext-built

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(EXT): $(STAMP) $(wildcard ext/*.pyx ext/*.pxd)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

run: $(EXT)
	$(BIN)/mqhook run

test: $(EXT)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(EXT)
	$(BIN)/pytest bench --benchmark-only

clean:
	rm -rf build $(VENV) src/mqhook/*.so ext/*.c $(EXT)
