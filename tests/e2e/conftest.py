"""Real jobqueue processes: Celery workers and the web app under gunicorn, over loopback."""

import os
import subprocess
import time
from collections.abc import Iterable

import pytest
import requests
import yaml

from jobs.models import Job
from jobs.rules.states import TERMINAL, Status
from tests import servers

DEPLOY = servers.ROOT / "deploy"


@pytest.fixture(autouse=True)
def _services(db, broker):
    """Every e2e test runs on a clean real PostgreSQL and Redis."""


class Starter:
    """Starts jobqueue processes (workers, movers, web apps) and stops them all at the end."""

    def __init__(self) -> None:
        self.started: list[servers.Process] = []

    def _start(self, name: str, command: list[str], env: dict | None) -> servers.Process:
        process = servers.Process(name, command, {**os.environ, **(env or {})})
        self.started.append(process)
        return process

    def worker(
        self,
        name: str,
        *,
        concurrency: int = 1,
        queues: str = "high,medium,low",
        env: dict | None = None,
        pool: str = "prefork",
    ) -> servers.Process:
        """`celery -A jobqueue_site worker`."""
        command = servers.worker_command(name, concurrency=concurrency, queues=queues, pool=pool)
        process = self._start(f"worker-{name}", command, env)
        process.wait_for_output("ready.", timeout=60)
        return process

    def mover(self, name: str = "mover", env: dict | None = None) -> servers.Process:
        """`manage.py run_mover`."""
        process = self._start(name, [servers.python(), "manage.py", "run_mover"], env)
        process.wait_for_output("mover started", timeout=30)
        return process

    def web(self, env: dict | None = None) -> str:
        """The web app under gunicorn on a free loopback port; returns its base URL."""
        port = servers.free_port()
        self._start(f"web-{port}", servers.gunicorn_command(port), env)
        url = f"http://127.0.0.1:{port}"
        servers.wait_for(lambda: _answers(url), timeout=30, what=f"gunicorn on {url}")
        return url

    def stop(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def starter():
    """Processes of this test alone: stopped after it."""
    made = Starter()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def module_starter(postgres, redis_server):
    """Processes shared by a module's tests, for tests that do not break or reconfigure them
    (the `db` and `broker` fixtures still clean the data between tests)."""
    made = Starter()
    yield made
    made.stop()


@pytest.fixture
def start_worker(starter):
    return starter.worker


@pytest.fixture
def start_mover(starter):
    return starter.mover


def jobs_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `manage.py jobs ...` as an operator would."""
    command = [servers.python(), "manage.py", "jobs", *args]
    return subprocess.run(command, cwd=servers.ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def start_web(starter):
    return starter.web


@pytest.fixture(scope="module")
def web(module_starter):
    """The web app with the tests' settings, shared by a module's tests (it keeps no state of its own)."""
    return module_starter.web()


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


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return servers.require_binary("prometheus", "prometheus")


def prometheus_config(targets: dict[str, list[str]]) -> str:
    """The shipped deploy/prometheus/prometheus.yml, scraping loopback `targets` (job -> host:port) every second."""
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {scrape["job_name"]: scrape for scrape in shipped["scrape_configs"]}
    assert set(jobs) == set(targets), f"shipped scrape jobs {sorted(jobs)} differ from the test's {sorted(targets)}"
    scrapes = [
        {"job_name": job, "metrics_path": jobs[job].get("metrics_path", "/metrics"), "static_configs": [{"targets": t}]}
        for job, t in targets.items()
    ]
    alerts = DEPLOY / "prometheus" / "alerts.yml"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(alerts)] if alerts.exists() else [],
        "scrape_configs": scrapes,
    }
    return yaml.safe_dump(config)


@pytest.fixture
def start_prometheus(prometheus_binary):
    """Start a real Prometheus on loopback scraping the given targets; stopped after the test."""
    started: list[servers.PrometheusServer] = []

    def start(targets: dict[str, list[str]]) -> servers.PrometheusServer:
        server = servers.PrometheusServer(prometheus_binary, prometheus_config(targets))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
