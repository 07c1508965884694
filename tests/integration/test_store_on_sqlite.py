"""The store's behaviour on both databases: the service, queue, submission, management API and
dashboard tests, which run on PostgreSQL in this session, run again on the embedded SQLite default in a
pytest of their own (JQ_TEST_DATABASE=sqlite), where the services take their portable paths. The
access matrix runs on PostgreSQL only: who may do what has no path of its own per database, and
the client tests here cover each client seeing only its own jobs on SQLite."""

import os
import subprocess

from tests.servers import ROOT, python

STORE_TESTS = [
    "tests/integration/test_services.py",
    "tests/integration/test_queues.py",
    "tests/integration/test_submit_api.py",
    "tests/integration/test_bulk_submit.py",
    "tests/integration/test_unique_jobs.py",
    "tests/integration/test_limits.py",
    "tests/integration/test_management_api.py",
    "tests/integration/test_client_api.py",
    "tests/integration/test_dashboard.py",
]


def test_the_store_tests_pass_on_sqlite_too():
    command = [python(), "-m", "pytest", "-q", "-m", "not postgres_only and not chaos", *STORE_TESTS]
    env = {**os.environ, "JQ_TEST_DATABASE": "sqlite"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)

    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "deselected" in summary, summary
