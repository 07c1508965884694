"""Job counters and the processing-time histogram, recorded where each event happens.

The services call the `record_*` helpers after their transaction commits. Every process that runs
services keeps its own values: the web app and the mover in memory (gunicorn's workers in
PROMETHEUS_MULTIPROC_DIR files), a Celery worker node in files that its main process exports for all
its pool processes (see `use_multiprocess`). The gauges that describe the whole system are not here:
`jobs.api.metrics_view` computes them at scrape time."""

import os

from prometheus_client import Counter, Histogram

from jobs.adapters import internals
from jobs.rules import registry
from jobs.rules.states import QUEUES

LABELS = ("type", "queue")
# 1 ms .. 10 min: fast no-op jobs up to the default per-attempt timeout (600 s).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

SUBMITTED = Counter("jobs_submitted", "Jobs accepted by submit (API, admin, CLI, resubmit).", LABELS)
PROCESSED = Counter("jobs_processed", "Attempts that succeeded.", LABELS)
FAILED = Counter("jobs_failed", "Attempts that failed: an exception, a time limit, or a lost worker.", LABELS)
RETRIED = Counter("jobs_retried", "Failed attempts after which the job waits to be retried.", LABELS)
DEAD_LETTERED = Counter("jobs_dead_lettered", "Jobs that went to the dead-letter queue.", LABELS)
UNIQUE_DUPLICATES = Counter(
    "jobs_unique_duplicates", "Submits answered with the existing job that holds their unique key.", LABELS
)
DURATION = Histogram(
    "job_processing_duration_seconds",
    "Time from the claim of an attempt to its recorded outcome (succeeded or failed; lost attempts excluded).",
    LABELS,
    buckets=BUCKETS,
)
# Recurring jobs, counted by the mover that fires them. Labelled by job type, not by schedule:
# schedules are made at run time, and a label per schedule would grow without bound.
SCHEDULE_TICKS = Counter("jobs_schedule_ticks", "Schedule ticks fired as jobs.", ("type",))
SCHEDULE_TICKS_MISSED = Counter(
    "jobs_schedule_ticks_missed",
    "Schedule ticks that fired no job: missed (no mover ran in time) or skipped_overlap (the previous run"
    " had not finished).",
    ("type", "reason"),
)
# 5 ms .. 5 min: a mover wakes for the tick; minutes only after an outage (policy skip).
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCHEDULE_LATENESS = Histogram(
    "job_schedule_lateness_seconds",
    "Seconds from a schedule tick's nominal time to the mover firing it.",
    ("type",),
    buckets=LATENESS_BUCKETS,
)
SCHEDULE_METRICS = (SCHEDULE_TICKS, SCHEDULE_LATENESS)
LIMIT_WAITS = Counter(
    "jobs_limit_waits", "Claims of a job that found its type's concurrency or rate limit reached: it waits.", ["type"]
)
CANCELLED = Counter("jobs_cancelled", "Jobs cancelled by an operator or their owner, running ones among them.", LABELS)
# An attempt is fenced when it is no longer its own (docs/explanation/delivery-guarantees.md): its
# lease ran out, the job was taken over, or it was cancelled. Counted by the worker node.
FENCE_REASONS = ("cancelled", "taken_over", "lease_expired")
FENCED = Counter("job_attempts_fenced", "Running attempts fenced: told to stop, their outcome refused.", ["reason"])
KILLED = Counter("job_attempts_killed", "Pool processes ended because a fenced attempt outran its grace.", ["reason"])
REFUSED = Counter(
    "job_results_refused", "Outcomes of finished attempts the fence refused (the job had moved on).", ["outcome"]
)
JOB_METRICS = (SUBMITTED, PROCESSED, FAILED, RETRIED, DEAD_LETTERED, DURATION, UNIQUE_DUPLICATES, LIMIT_WAITS)
JOB_METRICS += (CANCELLED, FENCED, KILLED, REFUSED)
# Which process counts what: the web app submissions, a worker node the attempts' outcomes, the
# mover the attempts it finds lost (and what their failure leads to).
WEB_METRICS = (SUBMITTED, UNIQUE_DUPLICATES, CANCELLED)
WORKER_METRICS = (PROCESSED, FAILED, RETRIED, DEAD_LETTERED, DURATION)
MOVER_METRICS = (FAILED, RETRIED, DEAD_LETTERED, SUBMITTED)


def start_at_zero(families: tuple) -> None:
    """Export every series of `families` for each registered job type and queue from the start,
    at 0: a rate() or an alert then sees 0, not a missing series, before the first event."""
    for family in families:
        for job_type in registry.names():
            for queue in QUEUES:
                family.labels(job_type, queue)


def record_submitted(*, type: str, queue: str) -> None:
    SUBMITTED.labels(type, queue).inc()


def start_fence_metrics_at_zero() -> None:
    for reason in FENCE_REASONS:
        FENCED.labels(reason)
        KILLED.labels(reason)
    for outcome in ("succeeded", "failed"):
        REFUSED.labels(outcome)


def record_cancelled(*, type: str, queue: str) -> None:
    CANCELLED.labels(type, queue).inc()


def record_fenced(*, reason: str) -> None:
    FENCED.labels(reason).inc()


def record_killed(*, reason: str) -> None:
    KILLED.labels(reason).inc()


def record_refused(*, outcome: str, count: int = 1) -> None:
    REFUSED.labels(outcome).inc(count)


def record_unique_duplicate(*, type: str, queue: str) -> None:
    UNIQUE_DUPLICATES.labels(type, queue).inc()


def record_succeeded(*, type: str, queue: str, duration: float) -> None:
    PROCESSED.labels(type, queue).inc()
    DURATION.labels(type, queue).observe(max(duration, 0.0))


def record_failed(*, type: str, queue: str, duration: float | None, dead: bool) -> None:
    """A failed attempt; `duration` is None when the end was not seen (a lost worker)."""
    FAILED.labels(type, queue).inc()
    if duration is not None:
        DURATION.labels(type, queue).observe(max(duration, 0.0))
    (DEAD_LETTERED if dead else RETRIED).labels(type, queue).inc()


def start_schedule_metrics_at_zero() -> None:
    """The schedule series of every registered job type at 0 (see start_at_zero)."""
    for job_type in registry.names():
        for family in SCHEDULE_METRICS:
            family.labels(job_type)
        for reason in ("missed", "skipped_overlap"):
            SCHEDULE_TICKS_MISSED.labels(job_type, reason)


def record_schedule_tick(*, type: str, lateness: float) -> None:
    SCHEDULE_TICKS.labels(type).inc()
    SCHEDULE_LATENESS.labels(type).observe(max(lateness, 0.0))


def record_schedule_missed(*, type: str, reason: str, count: int = 1) -> None:
    SCHEDULE_TICKS_MISSED.labels(type, reason).inc(count)


def record_limit_wait(*, type: str) -> None:
    LIMIT_WAITS.labels(type).inc()


def use_multiprocess(path: str) -> None:
    """Keep the job metrics of this process and of every process it forks in files under `path`.
    prometheus_client chooses its value class when it is imported, from PROMETHEUS_MULTIPROC_DIR. A
    Celery worker imports it long before it knows it is a worker (the `celery` command loads
    Flower's plugin, which imports prometheus_client), so the worker switches the class here, in its
    main process, before the pool forks and before any job metric has a value: the metrics are
    labelled, so their values are only created on first use. After a fork, prometheus_client notices
    the new pid and writes to that process's own file."""
    used = internals.names_with_values(JOB_METRICS)
    if used:
        raise RuntimeError(f"job metrics already recorded in memory before multiprocess mode: {used}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    internals.use_multiprocess_values()
