"""`make run`'s stack against a password-protected Redis: the passwords configured never reach
Flower's API, the banner, or a command line anyone can read with `ps`."""

import os
import sys

import psutil
import pytest
import requests

from tests import servers

SECRETS = {
    "redis": "redis-s3cret-pw",
    "flower": "flower-s3cret-pw",
    "smtp": "smtp-s3cret-pw",
    "key": "django-s3cret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
}


@pytest.fixture
def protected_redis():
    server = servers.RedisServer(servers.free_port(), password=SECRETS["redis"])
    server.start()
    yield server
    server.stop()


def flower_workers(url: str, auth: tuple[str, str] | None) -> requests.Response:
    return requests.get(f"{url}/api/workers", params={"refresh": "1"}, auth=auth, timeout=30)


def test_no_configured_password_reaches_flower_the_banner_or_a_command_line(db, protected_redis):
    ports = {name: servers.free_port() for name in ("WEB_PORT", "FLOWER_PORT", "worker", "mover")}
    env = {
        **os.environ,
        "DEBUG": "1",
        "REDIS_URL": protected_redis.url,
        "SECRET_KEY": SECRETS["key"],
        "EMAIL_HOST_PASSWORD": SECRETS["smtp"],
        "FLOWER_BASIC_AUTH": f"ops:{SECRETS['flower']}",
        "WEB_PORT": str(ports["WEB_PORT"]),
        "FLOWER_PORT": str(ports["FLOWER_PORT"]),
        "JOB_WORKER_METRICS_PORT": str(ports["worker"]),
        "JOB_MOVER_METRICS_PORT": str(ports["mover"]),
    }
    stack = servers.Process("run-dev-secrets", [sys.executable, "manage.py", "run_dev"], env)
    try:
        stack.wait_for_output("jobqueue is running", timeout=90)
        flower = f"http://127.0.0.1:{ports['FLOWER_PORT']}"
        servers.wait_for(lambda: servers.port_open(ports["FLOWER_PORT"]), timeout=30, what="Flower")

        # Flower needs its login, and with it reports the worker with its configuration ...
        assert flower_workers(flower, None).status_code == 401

        def the_worker_with_its_conf() -> dict | None:
            body = flower_workers(flower, ("ops", SECRETS["flower"])).json()
            return body if any(w.get("conf") for w in body.values()) else None

        servers.wait_for(the_worker_with_its_conf, timeout=60, what="Flower to report the worker's conf")
        answer = flower_workers(flower, ("ops", SECRETS["flower"])).text
        [conf] = [w["conf"] for w in flower_workers(flower, ("ops", SECRETS["flower"])).json().values()]
        assert conf["CELERY_BROKER_URL"].startswith("redis://:[redacted]@127.0.0.1")

        # ... but no password in it, in the banner, or on any process's command line
        leaks = {name: secret for name, secret in SECRETS.items() if secret in answer}
        assert not leaks, f"Flower's /api/workers shows {sorted(leaks)}"
        banner = stack.output()
        assert not [name for name, secret in SECRETS.items() if secret in banner], banner[-2000:]
        stack_processes = [psutil.Process(stack.process.pid), *psutil.Process(stack.process.pid).children(True)]
        command_lines = [" ".join(p.cmdline()) for p in stack_processes]
        assert len(command_lines) >= 5  # run_dev, web, worker (and its pool), Flower, mover
        assert not [line for line in command_lines if any(secret in line for secret in SECRETS.values())]
    finally:
        stack.stop()
