# Corral's entry points. `make run` and `make test` work on a fresh clone of a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit install zookeeper bench-setup bench sim sim-sweep clean

$(STAMP): pyproject.toml
	@bash scripts/install-python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==24.3.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The reference server for differential tests: Debian's Apache ZooKeeper 3.8.
zookeeper:
	@bash scripts/install-zookeeper.sh

# The benchmark's prerequisites (ZooKeeper's C client library for the load generator,
# matplotlib); `make test` runs the benchmark's smoke form, so it needs them too.
bench-setup: $(STAMP)
	bash bench/setup.sh

# Corral vs Apache ZooKeeper 3.8 side by side (issue 4); never part of `make test`. Results in
# bench/results/. Extra harness flags: BENCH_ARGS, e.g. BENCH_ARGS="--only getData,setData --runs 5".
# bench: standalone rows + generator check + big trees (100k/1M znodes: memory, restart, snapshot).
bench: bench-setup
	$(PY) bench/harness.py $(BENCH_ARGS)

.PHONY: bench-ensemble bench-all bench-generator bench-memory bench-smoke

# The workload rows against two 3-server ensembles (ZooKeeper's and Corral's).
bench-ensemble: bench-setup
	$(PY) bench/harness.py --deploy ensemble --no-generator-check --znodes 0 $(BENCH_ARGS)

# Everything: standalone and ensemble rows, generator check, big trees (the README's run).
bench-all: bench-setup
	$(PY) bench/harness.py --deploy standalone,ensemble $(BENCH_ARGS)

# Only the generator check: ZooKeeper driven by 1 and 2 generator processes.
bench-generator: bench-setup
	$(PY) bench/harness.py --no-rows --znodes 0 $(BENCH_ARGS)

# Only the big-tree rows: RSS at 100k/1M znodes, restart with 1M, snapshot under load.
bench-memory: bench-setup
	$(PY) bench/harness.py --no-rows --no-generator-check $(BENCH_ARGS)

# Every part of the benchmark on both deployments, tiny and fast (what the smoke test runs).
bench-smoke: bench-setup
	$(PY) bench/harness.py --smoke --deploy standalone,ensemble --out /tmp/corral-bench-smoke $(BENCH_ARGS)

SEEDS ?= 10000
JOBS ?= 2
STRIDE ?= 1
# The deterministic simulator (issue 3): SEEDS seeded runs of 3/5 voters (some with an
# observer) under crashes, torn logs, partitions, pauses and clock jumps; invariants checked
# after every step. Extra flags: make sim SEEDS=500 SIMFLAGS="--servers 5 --observer";
# SIMFLAGS=--reconfig adds dynamic reconfigs (joiners, faults aimed at pending ones).
# A failing seed replays with `python -m corral.sim --seed N`. The default suite runs 300.
sim: $(STAMP)
	$(PY) -m corral.sim --seeds $(SEEDS) --jobs $(JOBS) $(SIMFLAGS)

# Crash a server at every crash point of every Ready of the scripted sync schedule.
sim-sweep: $(STAMP)
	$(PY) -m corral.sim --sweep --stride $(STRIDE)

run: $(STAMP)
	$(VENV)/bin/corral server

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test: $(STAMP) zookeeper bench-setup lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) corral-data .mypy_cache .ruff_cache .pytest_cache
