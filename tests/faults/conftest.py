"""The fault-injection stack: real PostgreSQL, Redis, SMTP, web, three worker nodes and a mover.

The jobqueue processes reach PostgreSQL and Redis through loopback TCP proxies (tests/faults/
proxy.py), so a test can also cut or stall their connections; the test itself talks to the
servers directly. One stack serves a whole module; after each fault the stack must have healed
by itself, and a process the fault killed is started again, as a supervisor (systemd,
Kubernetes) would.
"""

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from django.db import close_old_connections
from django.utils import timezone

from tests import servers
from tests.handlers import EFFECTS_FILE_ENV
from tests.smtp import SmtpServer

from .load import EXPECTED_END, Load
from .proxy import TcpProxy

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command

WORKERS = ("w1", "w2", "w3")
THREADS_NODE = "w3"
FAST = servers.FAST


class Stack:
    def __init__(self, postgres: servers.PostgresServer, redis: servers.RedisServer) -> None:
        self.postgres, self.redis = postgres, redis
        self.pg_proxy = TcpProxy(postgres.port, name="pg-proxy").start()
        self.redis_proxy = TcpProxy(redis.port, name="redis-proxy").start()
        self.smtp = SmtpServer()
        self.smtp.start()
        self.effects = Path(tempfile.mkdtemp(prefix="jq-faults-")) / "effects.log"
        self.web_port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            **FAST,
            "DATABASE_URL": f"postgres://{postgres.user}@127.0.0.1:{self.pg_proxy.port}/{postgres.database}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_proxy.port}/0",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.smtp.port),
            "EMAIL_TIMEOUT": "5",
            "JOB_WORKER_METRICS_PORT": "0",
            "JOB_MOVER_METRICS_PORT": "0",
            "JOB_THROTTLE_USER": "100000/second",
            "JOB_EMAIL_HOURLY_PER_OWNER": "0",  # the load's client mails far more than a client should
            EFFECTS_FILE_ENV: str(self.effects),
        }
        self.processes: dict[str, servers.Process] = {}
        self.starts = Counter()

    # --- processes -----------------------------------------------------------------------

    def start(self, name: str) -> servers.Process:
        """Start (or start again) `name`: a worker node w1..w3, "web" or "mover"."""
        old = self.processes.get(name)
        if old is not None:
            old.stop(timeout=10)
        self.starts[name] += 1
        label = f"faults-{name}-{self.starts[name]}"
        if name == "web":
            command = servers.gunicorn_command(self.web_port)
            process = servers.Process(label, command, self.env)
            servers.wait_for(lambda: servers.port_open(self.web_port), timeout=30, what="gunicorn")
        elif name == "mover":
            process = servers.Process(label, [servers.python(), "manage.py", "run_mover"], self.env)
            process.wait_for_output("mover started", timeout=30)
        else:
            # Two prefork nodes and one threads node, as the README suggests for I/O-bound types.
            pool, concurrency = ("threads", 4) if name == THREADS_NODE else ("prefork", 2)
            command = servers.worker_command(name, concurrency=concurrency, pool=pool)
            process = servers.Process(label, command, self.env)
            process.wait_for_output("ready.", timeout=60)
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        self.start("web")
        self.start("mover")
        for name in WORKERS:
            self.start(name)

    def node(self, name: str) -> str:
        return f"{name}@{socket.gethostname()}"

    def pool_children(self, name: str) -> list[psutil.Process]:
        return psutil.Process(self.processes[name].process.pid).children()

    def kill(self, name: str, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        self.processes[name].signal(sig, group=group)

    def wait_exited(self, name: str, timeout: float = 30) -> None:
        self.processes[name].process.wait(timeout)

    def healthy(self) -> None:
        """Every process is still alive: none was taken down by a fault it should ride out."""
        dead = {name: p.process.returncode for name, p in self.processes.items() if not p.alive()}
        assert not dead, f"processes exited during the fault: {dead}; logs in {servers.ARTIFACTS}"

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=15)
        self.smtp.stop()
        self.pg_proxy.stop()
        self.redis_proxy.stop()
        shutil.rmtree(self.effects.parent, ignore_errors=True)

    # --- what happened -------------------------------------------------------------------

    def runs(self) -> Counter:
        """Runs of `test.effect` handlers per job id, from the file they append to."""
        if not self.effects.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.effects.read_text().splitlines() if line.strip())


@pytest.fixture(scope="module")
def stack(postgres, redis_server):
    made = Stack(postgres, redis_server)
    try:
        made.start_all()
        yield made
    finally:
        made.stop()


@pytest.fixture
def faults(stack, broker, make_user):
    """The stack with clean data (the `db` and `broker` fixtures), every process up, and an API
    token for the load."""
    stack.effects.unlink(missing_ok=True)
    stack.smtp.deliveries.clear()
    for name in ["web", "mover", *WORKERS]:
        if not stack.processes[name].alive():
            stack.start(name)
    _, stack.token = make_user("load")
    yield stack
    close_old_connections()


def first_start_per_node(since: datetime) -> dict[str, float]:
    """Seconds from `since` to the first attempt each worker node started after it."""
    from jobs.models import JobAttempt

    firsts: dict[str, datetime] = {}
    for worker, started in JobAttempt.objects.filter(started_at__gte=since).values_list("worker", "started_at"):
        if worker not in firsts or started < firsts[worker]:
            firsts[worker] = started
    return {worker: round((started - since).total_seconds(), 3) for worker, started in sorted(firsts.items())}


def wait_all_terminal(job_ids: list[str], *, timeout: float) -> dict[str, str]:
    from jobs.models import Job
    from jobs.rules.states import TERMINAL, Status

    done = {*TERMINAL, Status.DEAD}
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        statuses = dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "status"))
        statuses = {str(pk): status for pk, status in statuses.items()}
        pending = {pk: s for pk, s in statuses.items() if s not in done}
        if len(statuses) == len(job_ids) and not pending:
            return statuses
        if time.monotonic() > deadline:
            missing = set(job_ids) - set(statuses)
            raise AssertionError(
                f"{len(pending)} jobs not finished and {len(missing)} missing after {timeout}s: "
                f"{Counter(pending.values())}, e.g. {list(pending.items())[:5]}"
            )
        time.sleep(0.5)


def check_outcome(stack: Stack, load: Load, *, finish_within: float = 120) -> dict:
    """The invariants every fault must keep; returns figures for the report."""
    from jobs.models import Job, JobAttempt

    statuses = load.statuses()
    assert 500 not in statuses, f"a 500 was answered: {[a.body for a in load.answers if a.status == 500][:3]}"
    server_errors = {code: n for code, n in statuses.items() if code is not None and code >= 500 and code != 503}
    assert not server_errors, f"server errors other than 503: {server_errors}"
    unavailable = [a for a in load.answers if a.status == 503]
    assert all(a.retry_after for a in unavailable), "a 503 came without Retry-After"
    assert all(a.body.startswith("{") for a in unavailable), f"a 503 without JSON: {unavailable[0].body[:200]}"
    assert not load.failed, f"{len(load.failed)} submissions were never accepted, e.g. {load.failed[:3]}"

    accepted = load.accepted
    ids = [job["id"] for job in accepted.values()]
    assert len(set(ids)) == len(ids), "two idempotency keys were given the same job"
    # No job was made twice: one job per key, none that no client was given.
    stored = Job.objects.filter(idempotency_key__isnull=False).count()
    assert stored == len(ids), f"{stored} jobs stored for {len(ids)} accepted submissions"

    ends = wait_all_terminal(ids, timeout=finish_within)
    wrong = {
        job["id"]: (job["type"], ends[job["id"]])
        for job in accepted.values()
        if ends[job["id"]] != EXPECTED_END.get(job["type"], "succeeded")
    }
    assert not wrong, f"{len(wrong)} jobs ended wrongly: {list(wrong.items())[:5]}"

    history: dict[str, list[str]] = defaultdict(list)
    for job_id, outcome in JobAttempt.objects.filter(job_id__in=ids).order_by("number").values_list("job", "outcome"):
        history[str(job_id)].append(outcome)
    runs = stack.runs()
    effect_ids = [job["id"] for job in accepted.values() if job["type"] == "test.effect"]
    never_ran = [job_id for job_id in effect_ids if runs[job_id] == 0]
    assert not never_ran, f"{len(never_ran)} succeeded jobs whose handler never ran: {never_ran[:3]}"
    # A handler runs again only when an attempt of its job was cut short (lost or interrupted).
    unexplained = [job_id for job_id in effect_ids if runs[job_id] > 1 and runs[job_id] > len(history[job_id])]
    assert not unexplained, f"jobs run more often than they were attempted: {unexplained[:3]}"
    twice = [job_id for job_id in effect_ids if runs[job_id] > 1]
    for job_id in twice:
        assert set(history[job_id][:-1]) - {"succeeded"}, f"job {job_id} ran twice with no attempt cut short"

    emails = {key: job for key, job in accepted.items() if job["type"] == "email"}
    undelivered = [key for key in emails if stack.smtp.deliveries[key] == 0]
    assert not undelivered, f"{len(undelivered)} email jobs succeeded but were never delivered"
    return {
        "jobs": len(ids),
        "lost": len(ids) - Job.objects.filter(pk__in=ids).count(),  # accepted, and not in the database
        "ran_twice": len(twice) + sum(1 for key in emails if stack.smtp.deliveries[key] > 1),
        "answers": dict(sorted((str(k), v) for k, v in statuses.items())),
        "slowest_submit_s": round(load.slowest("POST"), 3),
    }


def report(name: str, figures: dict) -> None:
    """One line per fault in the test output (pytest -s or -rA shows it), and in test-artifacts/."""
    line = f"fault {name}: " + ", ".join(f"{key}={value}" for key, value in figures.items())
    print(line)
    servers.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (servers.ARTIFACTS / "faults.txt").open("a") as out:
        out.write(f"{timezone.now().isoformat()} {line}\n")
