# Two commands on a fresh machine: `make run` (the daemon on its embedded defaults) and `make test`.
# Each does its own set-up: a venv in .venv, an editable install, and the Cython modules in ext/ built in place.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXT := src/mqhook/.ext-built

.PHONY: run test lint bench bench-cluster fuzz clean

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

# Cluster costs as ratios (bench/cluster.py): CPU per message within a node vs across nodes, and
# QoS 0 fan-in with --workers 2 vs one process; about 2 minutes.
bench-cluster: $(EXT)
	$(BIN)/python bench/cluster.py

# The long fuzz run (tests/fuzz; README "Reliability"), about 25 minutes with the defaults: each atheris
# target (codec, ws, http) for FUZZ_TIME seconds on raw bytes, its corpus kept in FUZZ_DIR/corpus/TARGET
# (seeded on the first run, growing across runs), a crash written to FUZZ_DIR/crashes/TARGET/crash-<sha1>;
# then the hypothesis fuzz tests with FUZZ_SCALE times their examples. Reproduce a crash with
#   .venv/bin/python tests/fuzz/atheris_fuzz.py TARGET build/fuzz/crashes/TARGET/crash-<sha1>
# and a hypothesis failure with the @reproduce_failure line it prints.
FUZZ_TIME ?= 300
FUZZ_SCALE ?= 20
FUZZ_DIR ?= build/fuzz
FUZZ_TARGETS ?= codec ws http

fuzz: $(EXT)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[test,fuzz]'
	set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/crashes/$$t; \
		echo "fuzz: $$t for $(FUZZ_TIME)s, corpus $(FUZZ_DIR)/corpus/$$t"; \
		$(BIN)/python tests/fuzz/atheris_fuzz.py $$t $(FUZZ_DIR)/corpus/$$t -artifact_prefix=$(FUZZ_DIR)/crashes/$$t/ \
			-max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; \
	done
	MQHOOK_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/pytest tests/fuzz -q -p no:cacheprovider --timeout=0 -k 'not atheris'

clean:
	rm -rf build $(VENV) src/mqhook/*.so ext/*.c $(EXT)
