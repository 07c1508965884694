"""Scenario 1: N no-op jobs submitted in bulk, then drained by one worker node; against bare Celery."""

import statistics
import time

from tests.servers import wait_for

from . import peers
from .report import save
from .stack import running_stack

# Optional baselines, measured when their packages are installed (requirements-bench.txt).
PEERS = {"RQ, SimpleWorker": peers.drain_rq, "Procrastinate": peers.drain_procrastinate}


def submit_noops(count: int) -> None:
    from jobs import services

    for start in range(0, count, 1000):
        services.jobs_submit_many(submissions=[{"type": "noop", "payload": {}}] * min(1000, count - start))


def drain_jobqueue(stack, count: int, concurrency: int) -> float:
    """Submit `count` noop jobs with no worker running, then time one worker node draining them."""
    from django.utils import timezone

    from jobs.models import Job

    marker = timezone.now()
    submit_noops(count)
    fresh = Job.objects.filter(created_at__gte=marker, status="succeeded")
    stack.settle()
    worker = stack.worker("jobqueue", concurrency=concurrency)
    started = time.monotonic()
    wait_for(lambda: fresh.count() >= count, timeout=3600, what="jobs", interval=0.25)
    elapsed = time.monotonic() - started
    worker.stop()
    stack.processes.remove(worker)
    return count / elapsed


def drain_celery(stack, count: int, concurrency: int) -> float:
    import redis

    from .baseline_app import app

    client = redis.Redis.from_url(stack.redis.url)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("bench.noop", queue="medium", producer=producer)
    stack.settle()
    worker = stack.worker("celery", app="bench.baseline_app", concurrency=concurrency)
    started = time.monotonic()

    def drained() -> bool:
        return client.llen("medium") == 0 and client.hlen("unacked") == 0

    wait_for(drained, timeout=3600, what="bare Celery to drain", interval=0.05)
    elapsed = time.monotonic() - started
    worker.stop()
    stack.processes.remove(worker)
    return count / elapsed


def run(*, jobs: int = 20_000, concurrency: int = 2, repeats: int = 3) -> dict:
    ours, theirs = [], []
    others: dict[str, list[float]] = {name: [] for name in PEERS}
    with running_stack() as stack:
        for round_ in range(repeats):
            theirs.append(drain_celery(stack, jobs, concurrency))
            ours.append(drain_jobqueue(stack, jobs, concurrency))
            line = f"round {round_ + 1}: bare Celery {theirs[-1]:.0f} jobs/s, jobqueue {ours[-1]:.0f} jobs/s"
            for name, drain in PEERS.items():
                rate = drain(stack, jobs, concurrency)
                if rate is not None:
                    others[name].append(rate)
                    line += f", {name} {rate:.0f} jobs/s"
            print(line)
    median = statistics.median(ours)
    result = {
        "jobs": jobs,
        "concurrency": concurrency,
        "jobqueue_jobs_per_s": ours,
        "celery_jobs_per_s": theirs,
        "peers_jobs_per_s": others,
        "ratio": median / statistics.median(theirs),
    }
    rows = [
        ("jobs per run", f"{jobs:,} noop, one worker node, prefork concurrency {concurrency}"),
        (f"bare Celery (median of {repeats})", f"{statistics.median(theirs):.0f} jobs/s"),
        (f"jobqueue (median of {repeats})", f"{median:.0f} jobs/s"),
    ]
    for name, rates in others.items():
        if rates:
            theirs_median = statistics.median(rates)
            rows.append((name, f"{theirs_median:.0f} jobs/s (jobqueue: {median / theirs_median:.2f}x)"))
        else:
            rows.append((name, "not measured: not installed (pip install -r requirements-bench.txt)"))
    save("end-to-end", result, rows, headline=f"ratio to bare Celery: {result['ratio']:.2f}")
    return result
