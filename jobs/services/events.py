"""Job events: one log line each (job_id, type, queue, attempt, outcome, duration) and the metrics.

Both happen when the surrounding transaction commits, so a rolled-back change is neither logged nor
counted; a failure to record never fails the change itself."""

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction

from jobs.adapters import metrics

log = logging.getLogger("jobqueue.jobs")


@dataclass(frozen=True)
class JobFacts:
    job_id: Any
    type: str
    queue: str
    attempt: int


def _line(level: int, message: str, facts: JobFacts, outcome: str, **fields: Any) -> None:
    if not log.isEnabledFor(level):
        return
    extra = {"job_id": str(facts.job_id), "type": facts.type, "queue": facts.queue, "attempt": facts.attempt}
    # Made here rather than by log.log(), which walks the stack for the caller's file and line on
    # every call: these lines come from here, and a worker writes two of them per job.
    record = log.makeRecord(
        log.name, level, __file__, 0, message, (), None, extra={**extra, "outcome": outcome, **fields}
    )
    log.handle(record)


def _on_commit(*actions: partial) -> None:
    # One lookup of the connection for all the actions (the worker's path, twice a job); outside
    # a transaction Django runs each at once.
    connection = transaction.get_connection()
    for action in actions:
        connection.on_commit(action, robust=True)


def seconds_between(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 6)


def submitted(facts: JobFacts, *, status: str) -> None:
    _on_commit(
        partial(metrics.record_submitted, type=facts.type, queue=facts.queue),
        partial(_line, logging.INFO, "job submitted", facts, status),
    )


def answered_by_unique(facts: JobFacts) -> None:
    """A submit answered with the job that holds its unique key (`facts.job_id`)."""
    _on_commit(partial(metrics.record_unique_duplicate, type=facts.type, queue=facts.queue))


def started(facts: JobFacts, *, worker: str) -> None:
    _on_commit(partial(_line, logging.INFO, "job started", facts, "started", worker=worker))


def succeeded(facts: JobFacts, *, duration: float) -> None:
    _on_commit(
        partial(metrics.record_succeeded, type=facts.type, queue=facts.queue, duration=duration),
        partial(_line, logging.INFO, "job succeeded", facts, "succeeded", duration=duration),
    )


def failed(facts: JobFacts, *, status: str, duration: float | None, error: str, reason: str) -> None:
    """A failed attempt; `status` is where the job went. No `duration`: its worker was lost, its end not seen."""
    lost = duration is None
    record = partial(
        metrics.record_failed, type=facts.type, queue=facts.queue, duration=duration, dead=status == "dead"
    )
    message = f"job attempt {'lost' if lost else 'failed'}: {reason}"
    level = logging.WARNING if lost or status == "dead" else logging.INFO
    _on_commit(record, partial(_line, level, message, facts, status, duration=duration, error=error))


def requeued(facts: JobFacts, *, reason: str) -> None:
    _on_commit(partial(_line, logging.WARNING, "job requeued", facts, "requeued", error=reason))


def cancelled(facts: JobFacts, *, by: str, running: bool) -> None:
    message = f"job {by}" + (" while running: its worker is told to stop" if running else "")
    _on_commit(
        partial(metrics.record_cancelled, type=facts.type, queue=facts.queue),
        partial(_line, logging.INFO, message, facts, "cancelled"),
    )
