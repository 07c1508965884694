"""Real jobqueue processes: Celery workers and the web app under gunicorn, over loopback."""

import os
import subprocess
import time
from collections.abc import Iterable

import pytest
import requests

from jobs.models import Job
from jobs.states import TERMINAL, Status
from tests import services


@pytest.fixture(autouse=True)
def _services(db, broker):
    """Every e2e test runs on a clean real PostgreSQL and Redis."""


@pytest.fixture
def start_worker():
    """Start `celery -A jobqueue_site worker` processes; all are stopped after the test."""
    started: list[services.Process] = []

    def start(
        name: str,
        *,
        concurrency: int = 1,
        queues: str = "high,medium,low",
        env: dict | None = None,
        pool: str = "prefork",
    ) -> services.Process:
        command = [
            services.celery_binary(),
            "-A",
            "jobqueue_site",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "-P",
            pool,
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        process = services.Process(f"worker-{name}", command, {**os.environ, **(env or {})})
        started.append(process)
        process.wait_for_output("ready.", timeout=60)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def start_mover():
    """Start `manage.py run_mover` processes; all are stopped after the test."""
    started: list[services.Process] = []

    def start(name: str = "mover", env: dict | None = None) -> services.Process:
        command = [services.python(), "manage.py", "run_mover"]
        process = services.Process(name, command, {**os.environ, **(env or {})})
        started.append(process)
        process.wait_for_output("mover started", timeout=30)
        return process

    yield start
    for process in started:
        process.stop()


def jobs_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `manage.py jobs ...` as an operator would."""
    command = [services.python(), "manage.py", "jobs", *args]
    return subprocess.run(command, cwd=services.ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def start_web():
    """Start the web app under gunicorn on a free loopback port; returns its base URL."""
    started: list[services.Process] = []

    def start(env: dict | None = None, *, wait_healthy: bool = True) -> str:
        port = services.free_port()
        command = [
            services.python(),
            "-m",
            "gunicorn",
            "jobqueue_site.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--access-logfile",
            "-",
            "--timeout",
            "30",
        ]
        process = services.Process(f"web-{port}", command, {**os.environ, **(env or {})})
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        services.wait_for(lambda: _answers(url), timeout=30, what=f"gunicorn on {url}")
        return url

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def web(start_web):
    return start_web()


def _answers(url: str) -> bool:
    try:
        requests.get(f"{url}/healthz", timeout=10)
    except requests.ConnectionError:
        return False
    return True


def wait_until_terminal(job_ids: Iterable, *, timeout: float) -> dict[str, str]:
    """Poll the database until every job is terminal (or dead); returns id -> status."""
    ids = [str(job_id) for job_id in job_ids]
    done = {*TERMINAL, Status.DEAD}
    deadline = time.monotonic() + timeout
    while True:
        statuses = {str(pk): status for pk, status in Job.objects.filter(pk__in=ids).values_list("pk", "status")}
        if len(statuses) == len(ids) and all(status in done for status in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            pending = {pk: s for pk, s in statuses.items() if s not in done}
            raise AssertionError(
                f"{len(pending)} of {len(ids)} jobs not finished after {timeout}s: {list(pending.items())[:5]}"
            )
        time.sleep(0.2)
