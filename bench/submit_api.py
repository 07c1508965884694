"""Scenario 2: the submit API under gunicorn (single and bulk) and enqueue-to-start latency at a fixed rate."""

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from tests import servers as svc

from .measure import ms, rate_limited
from .report import percentiles, save
from .stack import running_stack

BODY = json.dumps({"type": "noop", "payload": {}})


WORKERS = 2


def start_web(stack, workers: int = WORKERS) -> str:
    port = svc.free_port()
    command = svc.gunicorn_command(port, workers=workers, access_log="/dev/null")
    stack.spawn("web", command, {"JOB_THROTTLE_USER": "1000000/second"})
    svc.wait_for(lambda: svc.port_open(port), timeout=30, what="gunicorn")
    return f"127.0.0.1:{port}"


def token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    return Token.objects.get_or_create(user=user)[0].key


def wrk_single(address: str, key: str, seconds: int, connections: int, *, body: str = BODY, lua: str = "") -> dict:
    """`lua`: more of wrk's script (a `request` function that makes each body, say)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Token {key}"\n{lua}'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"http://{address}/submit-job",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        value, suffix = found.groups()
        return float(value) * unit[suffix]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "tool": "wrk",
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def have_wrk() -> bool:
    """wrk, installed from Debian's packages when missing and possible; else the Python fallback is used."""
    import pytest

    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            svc.ensure_debian_package("wrk", "wrk")
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
            print(f"wrk could not be installed ({exc}); the Python load generator is used instead")
    return shutil.which("wrk") is not None


def python_single(
    address: str, key: str, seconds: int, connections: int, *, body: str = BODY, bodies: Iterator[str] | None = None
) -> dict:
    """Fallback load generator when wrk is not installed: threads posting in a loop (`bodies`: one
    body per request instead of `body`; an answer other than 200 or 201 counts as an error)."""
    host, port = address.split(":")
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            started = time.perf_counter()
            conn.request(
                "POST",
                "/submit-job",
                body if bodies is None else next(bodies),
                {"Content-Type": "application/json", "Authorization": f"Token {key}"},
            )
            status = conn.getresponse().status
            latencies.append(time.perf_counter() - started)
            errors[0] += status not in (200, 201)
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "tool": "python threads",
        "requests_per_s": len(latencies) / seconds,
        **percentiles(latencies),
        "errors": errors[0],
    }


def bulk(address: str, key: str, requests: int, size: int, clients: int) -> float:
    """`requests` bulk submissions of `size` jobs, from `clients` clients at once; jobs/s."""
    host, port = address.split(":")
    body = json.dumps({"jobs": [{"type": "noop", "payload": {}}] * size})
    headers = {"Content-Type": "application/json", "Authorization": f"Token {key}"}

    def client(count: int) -> None:
        for _ in range(count):
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/submit-jobs", body, headers)
            response = conn.getresponse()
            assert response.status == 201, response.read()[:300]
            response.read()
            conn.close()

    shares = [requests // clients + (n < requests % clients) for n in range(clients)]
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    return requests * size / (time.monotonic() - started)


def enqueue_to_start(stack, rate: float, seconds: float) -> dict:
    import redis

    from jobs import services
    from jobs.models import Job, JobAttempt

    # Start from empty queues: the jobs the submit measurements left would be a backlog to wait behind.
    redis.Redis.from_url(stack.redis.url).flushdb()
    Job.objects.filter(status="queued").delete()
    worker = stack.worker("latency", concurrency=2)
    ids = [services.job_submit(type="noop", payload={})[0].id for _ in rate_limited(int(rate * seconds), rate)]
    svc.wait_for(
        lambda: JobAttempt.objects.filter(job_id__in=ids, outcome="succeeded").count() == len(ids),
        timeout=120,
        what="jobs to run",
    )
    rows = JobAttempt.objects.filter(job_id__in=ids).values_list("started_at", "job__created_at")
    worker.stop()
    stack.processes.remove(worker)
    return percentiles([(started - created).total_seconds() for started, created in rows])


def run(
    *, seconds: int = 15, connections: int = 8, bulk_requests: int = 20, bulk_clients: int = 2, rate: float = 200
) -> dict:
    """Single submits from `connections` clients, then from one client per gunicorn worker: with
    more clients than sync workers, a request also waits for a worker to accept it."""
    load = wrk_single if have_wrk() else python_single
    with running_stack() as stack:
        address = start_web(stack, workers=WORKERS)
        key = token()
        single = {n: load(address, key, seconds, n) for n in dict.fromkeys((connections, WORKERS))}
        bulk_rate = bulk(address, key, bulk_requests, 1000, bulk_clients)
        latency = enqueue_to_start(stack, rate, 10)
    result = {"single": single, "bulk_jobs_per_s": bulk_rate, "enqueue_to_start": latency}
    rows = [
        (
            f"single POST /submit-job, {WORKERS} gunicorn workers, {n} connections",
            f"{one['requests_per_s']:.0f} requests/s, p50 {ms(one['p50'])}, p99 {ms(one['p99'])} "
            f"({one['tool']}, {one['errors']} non-201)",
        )
        for n, one in single.items()
    ]
    rows += [
        (f"bulk POST /submit-jobs (1,000 per request, {bulk_clients} clients)", f"{bulk_rate:,.0f} jobs/s"),
        (
            f"enqueue-to-start at {rate:.0f} jobs/s p50 / p99",
            f"{ms(latency['p50'])} / {ms(latency['p99'])} (max {ms(latency['max'])})",
        ),
    ]
    save("submit-api", result, rows)
    return result
