# `make run` starts the whole system for development; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv run test test-sqlite lint docs bench chaos

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

# The store's tests again on the embedded SQLite default, where the services take their portable
# paths (the PostgreSQL statements themselves and the access matrix run on PostgreSQL only).
STORE_TESTS := $(addprefix tests/integration/test_,services.py queues.py submit_api.py bulk_submit.py \
	unique_jobs.py limits.py management_api.py client_api.py dashboard.py)
test-sqlite: venv
	env JQ_TEST_DATABASE=sqlite $(BIN)/python -m pytest -q -m "not postgres_only and not chaos" $(STORE_TESTS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# Every benchmark scenario at full size (tens of minutes); one alone: `.venv/bin/python -m bench <name> --help`.
# Results: bench/results/*.json and a table appended to docs/explanation/benchmarks.md. The peers measured
# beside bare Celery (RQ, Procrastinate) come from requirements-bench.txt.
bench: venv
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	$(BIN)/python -m bench all

# Random faults (PostgreSQL, Redis, SMTP, processes) under load for CHAOS_SECONDS (600); the
# results go to docs/reliability.md.
chaos: venv
	$(BIN)/python -m pytest tests/faults/test_chaos.py -m chaos -s
