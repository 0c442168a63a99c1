# The front door: `make demo` records a bundled workload and prints top and flame;
# `make test` sets everything up and runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CC ?= gcc

.PHONY: demo test test-unit lint bench clean setup sysdeps npmdeps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: stax needs Python >= 3.11 ($(PY) is older)"; exit 1; }
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
		echo "python3-venv is missing; installing it (needs root)"; \
		apt-get update -qq && apt-get install -y -qq python3-venv && $(PY) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

build/split: workloads/split.c
	@mkdir -p build
	$(CC) -O2 -g -fno-omit-frame-pointer -o $@ $<

demo: $(STAMP) build/split
	$(BIN)/stax record -- ./build/split 1500
	$(BIN)/stax top
	$(BIN)/stax flame

sysdeps:
	@scripts/sysdeps.sh

# speedscope, pprof-format and the Firefox Profiler's CLI, into build/npm (once; needs node)
npmdeps: sysdeps
	@scripts/npmdeps.sh

test: $(STAMP) sysdeps npmdeps lint
	$(BIN)/python -m pytest -q -ra

# in-process tests only (tests/unit): no recording, server or browser; runs in seconds
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

# ruff, and the import graph of src/stax: no cycle between modules or layers, no module
# importing another's _private names, no source file over 450 lines without a closing reason
lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/python scripts/importgraph.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf build .pytest_cache
