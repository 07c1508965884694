# `make run` starts the whole system for development; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Processes for `make test` (pytest-xdist); each starts its own PostgreSQL and Redis. On two
# cores, tests/integration took 240 s with 2 and 358 s with 3 (load 9 and 12: a shared machine).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: venv run test coverage lint bench chaos

# Two stamps, each reinstalled only when its requirements changed: `make run` installs what the
# application needs to run here (requirements-run.txt), `make test` adds the test tools.
venv: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements.txt requirements-run.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-run.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed-run
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed-run
	env DEBUG=1 $(BIN)/python manage.py run_dev

test: venv
	$(PYTEST)

# Line coverage of the application code (configuration in pyproject.toml); HTML in test-artifacts/coverage/.
coverage: venv
	$(PYTEST) --cov --cov-report=term:skip-covered --cov-report=html:test-artifacts/coverage

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

# Every benchmark scenario at full size (tens of minutes); one alone: `.venv/bin/python -m bench <name> --help`.
# Results: bench/results/*.json and a table appended to docs/benchmarks.md. The peers measured
# beside bare Celery (RQ, Procrastinate) come from requirements-bench.txt.
bench: venv
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	$(BIN)/python -m bench all

# Random faults (PostgreSQL, Redis, SMTP, processes) under load for CHAOS_SECONDS (600); the
# results go to docs/reliability.md.
chaos: venv
	$(BIN)/python -m pytest tests/faults/test_chaos.py -m chaos -s
