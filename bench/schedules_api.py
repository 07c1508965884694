"""Scenario 9: the staff's schedule list (next run, last run, its outcome and its job's status) under
gunicorn, against the job list of the same page size over the same jobs, measured in the same run."""

import http.client
import json
import time
from datetime import timedelta

from .measure import ms
from .report import percentiles, save
from .stack import running_stack
from .submit_api import start_web


def _operator_token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_superuser("bench-operator", "bench@example.com", "bench")
    return Token.objects.create(user=user).key


def _fill(schedules: int, runs: int) -> None:
    """`schedules` schedules with `runs` fired ticks each, every tick with its job (rows written in
    bulk: the services' firing is not what is measured here)."""
    from django.utils import timezone

    from jobs.models import Job, Schedule, ScheduleRun

    now = timezone.now()
    rows = [
        Schedule(name=f"bench-{n:06d}", job_type="noop", cron="* * * * *", next_tick_at=now + timedelta(minutes=1))
        for n in range(schedules)
    ]
    Schedule.objects.bulk_create(rows, batch_size=2000)
    ticks = [now - timedelta(minutes=m + 1) for m in range(runs)]
    pairs = [(schedule, tick) for schedule in Schedule.objects.all() for tick in ticks]
    jobs = Job.objects.bulk_create([Job(type="noop", status="succeeded") for _ in pairs], batch_size=2000)
    ScheduleRun.objects.bulk_create(
        [
            ScheduleRun(schedule=schedule, tick_at=tick, outcome="fired", job=job, recorded_at=tick)
            for (schedule, tick), job in zip(pairs, jobs, strict=True)
        ],
        batch_size=2000,
    )


def _timed_gets(address: str, key: str, paths: dict[str, str], requests: int) -> dict[str, list[float]]:
    """Each path `requests` times, taking turns, on one keep-alive connection each."""
    host, port = address.split(":")
    latencies: dict[str, list[float]] = {label: [] for label in paths}
    connections = {label: http.client.HTTPConnection(host, int(port), timeout=30) for label in paths}
    headers = {"Authorization": f"Token {key}"}
    for _ in range(requests):
        for label, path in paths.items():
            started = time.perf_counter()
            connections[label].request("GET", path, headers=headers)
            response = connections[label].getresponse()
            body = response.read()
            latencies[label].append(time.perf_counter() - started)
            if response.status != 200 or not json.loads(body)["results"]:
                raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    for connection in connections.values():
        connection.close()
    return latencies


def run(*, schedules: int = 10_000, runs: int = 5, requests: int = 200) -> dict:
    with running_stack() as stack:
        _fill(schedules, runs)
        key = _operator_token()
        stack.settle()
        address = start_web(stack)
        paths = {
            "jobs": "/api/jobs/?page_size=50",
            "schedules": "/api/schedules/?page_size=50",
            "schedules, last page": f"/api/schedules/?page_size=50&page={schedules // 50}",
            "runs": "/api/schedules/bench-000000/runs/?page_size=50",
        }
        _timed_gets(address, key, paths, 10)  # warm-up: connections, caches, plans
        latencies = _timed_gets(address, key, paths, requests)
    stats = {label: percentiles(values) for label, values in latencies.items()}
    baseline = stats["jobs"]
    result = {
        "schedules": schedules,
        "runs_per_schedule": runs,
        "requests": requests,
        "latency": stats,
        "p50_ratio": {label: s["p50"] / baseline["p50"] for label, s in stats.items()},
    }
    rows = [("data", f"{schedules:,} schedules with {runs} fired runs each ({schedules * runs:,} jobs)")]
    for label, s in stats.items():
        ratio = s["p50"] / baseline["p50"]
        what = "GET /api/jobs/ (baseline)" if label == "jobs" else f"GET {paths[label].split('?')[0]} ({label})"
        rows.append((f"{what}, page of 50", f"p50 {ms(s['p50'])}, p99 {ms(s['p99'])} ({ratio:.2f}x the baseline p50)"))
    save("schedules-api", result, rows)
    return result
