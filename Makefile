# Two commands for a fresh machine: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pbtune-installed
ARGS   ?=

# pip installs without compiling (--no-compile: a fresh clone's set-up skips compiling the
# thousands of modules torch, Ray, pandas and matplotlib ship and never import here), so Python
# must be free to cache the bytecode of what it does import on first use. An environment with
# PYTHONDONTWRITEBYTECODE set would otherwise recompile torch and Ray from source in every
# process, every Ray worker included (measured: pbtune start-up 7-8 s instead of 3-5 s, Ray Tune's
# actor restarts slower still). The caches land in .venv and in git-ignored __pycache__ folders.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast setup lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@touch $(STAMP)

run: setup  ## the quickstart: PBT of a small CNN on scikit-learn's digits, local Ray
	$(BIN)/pbtune run $(ARGS)

test: setup  ## the whole suite (unit + small Ray end-to-end tests)
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -q -m "not ray and not slow" $(ARGS)

lint: setup
	$(BIN)/ruff check src tests bench examples

bench: setup  ## the engine benchmark against Ray Tune (minutes)
	$(BIN)/python bench/engine_vs_tune.py $(ARGS)

clean:
	rm -rf results .pytest_cache .ruff_cache
