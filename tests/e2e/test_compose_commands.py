"""The docker compose stack's own commands and settings, run as plain processes on this machine.

No container engine is needed: each jobqueue service of docker-compose.yml (migrate, web,
worker, mover, Flower and its gate) is started with its command and environment from the file;
only the addresses of the compose network are swapped for the test's PostgreSQL, Redis and SMTP
server on loopback. Then jobs go in through the web app and come out of the workers.
"""

import importlib.util
import os
import re
import subprocess

import pytest
import requests
import yaml
from aiosmtpd.controller import Controller

from tests import servers
from tests.deploy.project import HEALTHCHECK_SCRIPT, ROOT, interpolate
from tests.e2e.test_web import poll_status

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
# What .env must provide (${NAME:?...} in the file).
DOTENV = {"FLOWER_BASIC_AUTH": "operator:compose-test", "JOBQUEUE_FLOWER_UPSTREAM_LOGIN": "gate:compose-gate-only"}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=servers.free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def healthcheck():
    spec = importlib.util.spec_from_file_location("jobqueue_healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_command(argv: list[str], **replace: str) -> list[str]:
    """The service's command with this machine's programs and the given option values."""
    programs = {"celery": [servers.celery_binary()], "gunicorn": [servers.python(), "-m", "gunicorn"]}
    command = [*programs.get(argv[0], [servers.python() if argv[0] == "python" else argv[0]]), *argv[1:]]
    for option, value in replace.items():
        command = [f"{option}={value}" if arg.startswith(f"{option}=") else arg for arg in command]
    return command


def local_env(service: str, smtp_port: int) -> dict[str, str]:
    required = re.compile(r"\$\{(" + "|".join(DOTENV) + r"):\?[^}]*\}")
    env = {
        key: interpolate(required.sub(lambda match: DOTENV[match.group(1)], str(value)))
        for key, value in (COMPOSE[service].get("environment") or {}).items()
    }
    local = {
        # The compose network's postgres, redis and mailpit are the test's servers on loopback.
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        # Values .env must provide (${...:?}) in compose.
        "SECRET_KEY": os.environ["SECRET_KEY"],
        # The gate listens on loopback and finds Flower there.
        "JOBQUEUE_FLOWER_GATE_ADDR": "127.0.0.1",
        "JOBQUEUE_FLOWER_UPSTREAM_HOST": "127.0.0.1",
        # Metrics endpoints on free loopback ports: other tests may run on this machine.
        "JOB_WORKER_METRICS_ADDR": "127.0.0.1",
        "JOB_WORKER_METRICS_PORT": str(servers.free_port()),
        "JOB_MOVER_METRICS_PORT": str(servers.free_port()),
    }
    assert env.get("SECRET_KEY", "required") == "required"
    env.update({key: value for key, value in local.items() if key in env})
    return {**os.environ, **env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def stack(smtp_sink):
    started: list[servers.Process] = []
    smtp_port, inbox = smtp_sink

    def start(service: str, env: dict[str, str] | None = None, **replace: str) -> tuple[servers.Process, list[str]]:
        command = local_command(COMPOSE[service]["command"], **replace)
        process = servers.Process(f"compose-{service}", command, {**local_env(service, smtp_port), **(env or {})})
        started.append(process)
        return process, command

    yield start, smtp_port, inbox
    for process in started:
        process.stop(timeout=40)


def test_the_compose_services_run_jobs_end_to_end(stack, make_user, monkeypatch):
    start, smtp_port, inbox = stack
    migrate = subprocess.run(
        local_command(COMPOSE["migrate"]["command"]),
        cwd=ROOT,
        env=local_env("migrate", smtp_port),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr

    web_port, flower_port, gate_port = servers.free_port(), servers.free_port(), servers.free_port()
    web, web_command = start("web", **{"--bind": f"127.0.0.1:{web_port}"})
    worker, _ = start("worker")
    mover, _ = start("mover")
    flower, flower_command = start("flower", **{"--port": str(flower_port)})
    ports = {"JOBQUEUE_FLOWER_GATE_PORT": str(gate_port), "JOBQUEUE_FLOWER_UPSTREAM_PORT": str(flower_port)}
    gate, gate_command = start("flower-gate", env=ports)
    worker.wait_for_output("ready", timeout=60)
    mover.wait_for_output("mover started", timeout=30)

    # The image's health check, asked the way the web container asks it, says healthy.
    script = healthcheck()
    url = f"http://127.0.0.1:{web_port}"
    servers.wait_for(lambda: script.check(script.url_for("web", web_command))[0], timeout=30, what="web healthy")
    servers.wait_for(
        lambda: script.check(script.url_for("flower", flower_command))[0], timeout=30, what="flower healthy"
    )
    monkeypatch.setenv("JOBQUEUE_FLOWER_GATE_PORT", str(gate_port))  # as in the gate's container
    servers.wait_for(
        lambda: script.check(script.url_for("flower-gate", gate_command))[0], timeout=30, what="flower-gate healthy"
    )
    # Clients reach Flower through the gate, with the login FLOWER_BASIC_AUTH gives it, and its
    # pages may not be framed; Flower itself takes only the gate's login.
    gate_url, operator = f"http://127.0.0.1:{gate_port}", tuple(DOTENV["FLOWER_BASIC_AUTH"].split(":"))
    assert requests.get(f"{gate_url}/", timeout=10).status_code == 401
    logged_in = requests.get(f"{gate_url}/", auth=operator, timeout=10)
    assert logged_in.status_code == 200 and logged_in.headers["X-Frame-Options"] == "DENY"
    assert requests.get(f"http://127.0.0.1:{flower_port}/", auth=operator, timeout=10).status_code == 401
    # Prometheus scrapes Flower's metrics without the login (deploy/prometheus/prometheus-compose.yml).
    assert requests.get(f"http://127.0.0.1:{flower_port}/metrics", timeout=10).status_code == 200

    _, token = make_user("compose")
    headers = {"Authorization": f"Token {token}"}
    jobs = [
        {"type": "noop"},
        {"type": "noop", "priority": "high", "delay": 1},
        {"type": "email", "payload": {"to": "ops@example.com", "subject": "From compose", "body": "Hello."}},
    ]
    ids = []
    for body in jobs:
        answer = requests.post(f"{url}/submit-job", json=body, headers=headers, timeout=30)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])

    for job_id in ids:
        status = poll_status(url, token, job_id, until={"succeeded", "dead"}, timeout=60)
        assert status["status"] == "succeeded", status
        assert status["history"][0]["worker"].startswith("worker@")
    assert len(inbox.messages) == 1 and "Subject: From compose" in inbox.messages[0]
    assert web.alive() and worker.alive() and mover.alive() and flower.alive() and gate.alive()
