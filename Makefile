# `make run` serves config.toml on 127.0.0.1:8000; `make test` runs lint, types and the whole suite.
# Both create .venv and install into it first, so a machine with only Python 3.11 is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: run test lint check-config clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/streamserver serve --config $(CONFIG)

check-config: $(VENV)/.installed
	$(BIN)/streamserver check-config $(CONFIG)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check streamserver plugins tests benchmarks
	$(BIN)/ruff format --check streamserver plugins tests benchmarks
	$(BIN)/mypy streamserver

test: lint
	$(BIN)/python -m pytest -q

# The benchmark suite (benchmarks/run.py): server pinned to CPU 0, load generator to CPU 1.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
