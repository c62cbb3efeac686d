# Corral's entry points. `make run` and `make test` work on a fresh clone of a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit install zookeeper sim clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==24.3.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The reference server for differential tests: Debian's Apache ZooKeeper 3.8.
zookeeper:
	@bash scripts/install-zookeeper.sh

run: $(STAMP)
	$(VENV)/bin/corral server

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test: $(STAMP) zookeeper lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) corral-data .mypy_cache .ruff_cache .pytest_cache
