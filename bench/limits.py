"""Scenario 8: throughput of a type under a concurrency limit that is not the bottleneck (twice the
worker slots) against the same type unlimited, in the same run."""

import statistics
import time

from tests.servers import wait_for

from .report import save
from .stack import running_stack

TYPE = "bench.work"


def drain(stack, *, jobs: int, concurrency: int, ms: int) -> float:
    """Submit `jobs` with no worker running, then time one worker node draining them; jobs/s."""
    from django.utils import timezone

    from jobs import services
    from jobs.models import Job

    marker = timezone.now()
    for start in range(0, jobs, 1000):
        batch = [{"type": TYPE, "payload": {"ms": ms}}] * min(1000, jobs - start)
        services.jobs_submit_many(submissions=batch)
    done = Job.objects.filter(created_at__gte=marker, status="succeeded")
    stack.settle()
    worker = stack.worker("limits", concurrency=concurrency)
    started = time.monotonic()
    wait_for(lambda: done.count() >= jobs, timeout=3600, what="jobs", interval=0.1)
    elapsed = time.monotonic() - started
    worker.stop()
    stack.processes.remove(worker)
    return jobs / elapsed


def path_costs(*, jobs: int = 1_000) -> dict[str, float]:
    """Median ms of a claim and of the success a task hands over, in this process with no
    worker running, for the type as its limits are now: where a limited job's extra time goes."""
    from jobs import services
    from jobs.models import Job
    from tasks import finisher, outcomes

    services.jobs_submit_many(submissions=[{"type": TYPE, "payload": {"ms": 0}}] * jobs)
    ids = list(Job.objects.filter(status="queued", type=TYPE).values_list("id", flat=True))
    claims, successes = [], []
    for job_id in ids:
        started = time.perf_counter()
        claim = services.job_claim(job_id=job_id, worker="bench-costs@localhost", job_type=TYPE)
        claimed = time.perf_counter()
        outcomes.succeeded(claim, {})
        claims.append(claimed - started)
        successes.append(time.perf_counter() - claimed)
    finisher.drain()  # the successes handed to this process's writer, written
    return {"claim_ms": statistics.median(claims) * 1000, "success_ms": statistics.median(successes) * 1000}


def run(*, jobs: int = 5_000, concurrency: int = 2, ms: int = 10, repeats: int = 3) -> dict:
    limit = 2 * concurrency
    unlimited, limited = [], []
    with running_stack() as stack:
        from django.conf import settings

        from jobs import services

        services.limit_clear(type=TYPE, by="bench")
        time.sleep(settings.JOB_LIMIT_CACHE_SECONDS)
        costs = {"unlimited": path_costs()}
        services.limit_set(type=TYPE, concurrency=limit, by="bench")
        time.sleep(settings.JOB_LIMIT_CACHE_SECONDS)
        costs["limited"] = path_costs()
        for round_ in range(repeats):
            services.limit_clear(type=TYPE, by="bench")
            time.sleep(settings.JOB_LIMIT_CACHE_SECONDS)  # no process trusts a cached override any more
            unlimited.append(drain(stack, jobs=jobs, concurrency=concurrency, ms=ms))
            services.limit_set(type=TYPE, concurrency=limit, by="bench")
            time.sleep(settings.JOB_LIMIT_CACHE_SECONDS)
            limited.append(drain(stack, jobs=jobs, concurrency=concurrency, ms=ms))
            print(
                f"round {round_ + 1}: unlimited {unlimited[-1]:.0f} jobs/s, "
                f"concurrency={limit} {limited[-1]:.0f} jobs/s ({limited[-1] / unlimited[-1]:.2f}x)"
            )
    ratio = statistics.median(limited) / statistics.median(unlimited)
    result = {
        "jobs": jobs,
        "concurrency": concurrency,
        "limit": limit,
        "handler_ms": ms,
        "unlimited_jobs_per_s": unlimited,
        "limited_jobs_per_s": limited,
        "ratio": ratio,
        "path_costs_ms": costs,
    }
    rows = [
        ("jobs per run", f"{jobs:,} of {ms} ms, one worker node, prefork concurrency {concurrency}"),
        (f"unlimited (median of {repeats})", f"{statistics.median(unlimited):.0f} jobs/s"),
        (f"concurrency={limit} (median of {repeats})", f"{statistics.median(limited):.0f} jobs/s"),
        *(
            (
                f"{name}: claim / success handed over, in-process (median of 1,000)",
                f"{c['claim_ms']:.2f} ms / {c['success_ms']:.2f} ms",
            )
            for name, c in costs.items()
        ),
    ]
    save("limits", result, rows, headline=f"limited against unlimited: {ratio:.2f}x (target at least 0.8x)")
    return result
