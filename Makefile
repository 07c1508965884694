# `make run` starts the whole system for development; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Processes for `make test` (pytest-xdist); each starts its own PostgreSQL and Redis. On two
# cores, tests/integration took 240 s with 2 and 358 s with 3 (load 9 and 12: a shared machine).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: venv run test test-sqlite test-django6 test-partitions partitions coverage lint docs bench chaos

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

# The whole suite but the partition suite (test-partitions: root, namespaces, no xdist), then the
# store's tests again on SQLite (test-sqlite).
test: venv
	$(PYTEST) --ignore=tests/partitions
	$(MAKE) --no-print-directory test-sqlite

# Line coverage of the application code (configuration in pyproject.toml); HTML in test-artifacts/coverage/.
coverage: venv
	$(PYTEST) --ignore=tests/partitions --cov --cov-report=term:skip-covered --cov-report=html:test-artifacts/coverage

# The store's tests again on the embedded SQLite default, where the services take their portable
# paths (the PostgreSQL statements themselves and the access matrix run on PostgreSQL only).
STORE_TESTS := $(addprefix tests/integration/test_,services.py queues.py submit_api.py bulk_submit.py \
	unique_jobs.py limits.py management_api.py client_api.py dashboard.py)
test-sqlite: venv
	env JQ_TEST_DATABASE=sqlite $(PYTEST) -q -m "not postgres_only and not chaos" $(STORE_TESTS)

# Unit and integration tests, Django's own task tests among them, on Python 3.12 and Django 6.1.
PYTHON312 ?= $(shell pyenv root)/versions/3.12.1/bin/python
DJANGO6 := .venv-django6

$(DJANGO6)/.installed: requirements.txt requirements-run.txt requirements-dev.txt
	test -x $(DJANGO6)/bin/python || $(PYTHON312) -m venv $(DJANGO6)
	$(DJANGO6)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

test-django6: $(DJANGO6)/.installed
	$(DJANGO6)/bin/python -m pytest -n 2 tests/unit tests/integration tests/e2e/test_django_task_suites.py

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

# The partition suite, short: each process in its own network namespace, links cut one at a time
# (tests/partitions/). Needs root, ip (iproute2) and nft (nftables); skips without them, fails
# under CI=true. One process: the namespaces and ports are the suite's own, not per xdist worker.
test-partitions: venv
	$(BIN)/python -m pytest tests/partitions -p no:cacheprovider

# The long partition run: random cuts under load for JQ_PARTITION_SECONDS (600), checked by the
# history checker; results go to docs/reliability.md.
JQ_PARTITION_SECONDS ?= 600
partitions: venv
	env JQ_PARTITION_SECONDS=$(JQ_PARTITION_SECONDS) $(BIN)/python -m pytest tests/partitions -m partitions_long -s -p no:cacheprovider

# Random faults (PostgreSQL, Redis, SMTP, processes) under load for CHAOS_SECONDS (600); the
# results go to docs/reliability.md.
chaos: venv
	$(BIN)/python -m pytest tests/faults/test_chaos.py -m chaos -s
