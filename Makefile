# lens_jax: two commands for a newcomer — `make run` and `make test`.
SHELL := /bin/bash
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
export LENS_JAX_CACHE ?= $(CURDIR)/.cache
OUT     ?= outputs/run
JOBS    ?= 2

# extra pytest arguments, e.g. `make test PYTEST_ARGS="-k pyramid"`
PYTEST_ARGS ?=

.PHONY: all venv sysdeps run test test-fast lint bench experiments clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the CPU build (test/benchmark reference only)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[data,test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages, best effort (tests that need one skip without it, naming the command):
# Fashion-MNIST (offline data set) and Chromium + chromedriver (the report page's browser test).
sysdeps:
	@pkgs=""; \
	[ -f $(FASHION) ] || pkgs="$$pkgs dataset-fashion-mnist"; \
	{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || pkgs="$$pkgs chromium chromium-driver"; \
	if [ -n "$$pkgs" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq >/dev/null 2>&1; \
	    for p in $$pkgs; do apt-get install -y -qq $$p >/dev/null 2>&1 \
	      || echo "warning: could not install $$p (apt-get install $$p)"; done; \
	  else echo "note: missing Debian packages; run: sudo apt-get install$$pkgs"; fi; \
	fi

run: venv sysdeps
	$(BIN)/python -m lens_jax run --out $(OUT)

# every test, on $(JOBS) workers; the 15 slowest are listed at the end. Compiled programs
# are cached in $(LENS_JAX_CACHE)/jax_compile (tests/conftest.py), shared by the workers;
# the tests use XLA's quick CPU code generation and, in the test processes, LLVM -O0 except
# while training (tests/conftest.py; LENS_JAX_TEST_CODEGEN=default: XLA's own).
test: venv sysdeps
	$(BIN)/python -m pytest -n $(JOBS) -q --durations=15 $(PYTEST_ARGS) tests

test-fast: venv
	$(BIN)/python -m pytest -q -x -m "not slow" $(PYTEST_ARGS) tests

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/bench_pyramid.py
	$(BIN)/python benchmarks/bench_lens.py
	$(BIN)/python benchmarks/bench_params.py
	$(BIN)/python benchmarks/bench_flow.py
	$(BIN)/python benchmarks/bench_pyramid_nesting.py

# every study (hours on a CPU); `make experiments QUICK=1` runs the tiny versions
experiments: venv sysdeps
	$(BIN)/python experiments/run_all.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .cache outputs
