# `make run` serves config.toml on 127.0.0.1:8000 (`make run PORT=9000 HOST=... CONFIG=...` to
# choose); `make test` runs lint, types and the whole suite. Both create .venv and install into it
# first, so a machine with only Python 3.11 is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml
# Empty: the config's server.host and server.port. Set on the command line only (`:=`, not `?=`):
# an exported PORT or HOST (many platforms export PORT) must not move the server unasked.
HOST :=
PORT :=

.PHONY: run test lint check-config clean bench bench-full

# The installs take a while the first time and pip --quiet says nothing meanwhile: each step says
# what it is doing before it starts.
$(BIN)/python:
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	@echo "make: installing streamserver (editable) and aiohttp, aiohttp-sse, openai, pluggy, prometheus-client, orjson, lz4 (about 40 s the first time)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "make: installing the test tools: pytest, pytest-timeout, pytest-xdist, hypothesis, httpx, websockets, schemathesis, playwright, ruff, mypy, anthropic, jsonschema, langchain-openai, uvloop (about 40 s the first time)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	@echo "make: installing the benchmark baselines and the Redis client: fastapi, sse-starlette, uvicorn, httptools, matplotlib, redis, uvloop, the LiteLLM proxy"
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/streamserver serve --config $(CONFIG)$(if $(HOST), --host $(HOST))$(if $(PORT), --port $(PORT))

check-config: $(VENV)/.installed
	$(BIN)/streamserver check-config $(CONFIG)

lint: $(VENV)/.installed-test
	@echo "make: ruff check, ruff format --check, mypy --strict"
	$(BIN)/ruff check streamserver plugins tests benchmarks
	$(BIN)/ruff format --check streamserver plugins tests benchmarks
	$(BIN)/mypy streamserver

test: lint
	@echo "make: the test suite (pytest)"
	$(BIN)/python -m pytest -q

# The benchmark suite (benchmarks/run.py): server pinned to CPU 0, load generator to CPU 1 (and
# redis-server, for the Redis store's runs, when it is installed: apt-get install redis-server).
bench: $(VENV)/.installed-bench
	@echo "make: the benchmark suite without the 10,000 slow streams and the paced sweep (about 9 minutes; make bench-full runs them too)"
	$(BIN)/python -m benchmarks.run --quick

# Every workload, every target (9-16 minutes, by machine).
bench-full: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
