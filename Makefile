# `make run` starts the whole system for development; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv run test lint bench chaos test-django6

venv: $(VENV)/.installed

# Reinstall only when a requirements file changed since the last install.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

run: venv
	env DEBUG=1 $(BIN)/python manage.py run_dev

test: venv
	$(BIN)/python -m pytest

# Unit and integration tests, Django's own task tests among them, on Python 3.12 and Django 6.1.
PYTHON312 ?= $(shell pyenv root)/versions/3.12.1/bin/python
DJANGO6 := .venv-django6

$(DJANGO6)/.installed: requirements.txt requirements-dev.txt
	test -x $(DJANGO6)/bin/python || $(PYTHON312) -m venv $(DJANGO6)
	$(DJANGO6)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

test-django6: $(DJANGO6)/.installed
	$(DJANGO6)/bin/python -m pytest -n 2 tests/unit tests/integration tests/e2e/test_django_task_suites.py

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
