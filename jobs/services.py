"""Every write to jobs goes through here: submit, claim, finish, progress."""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from tasks import registry

from . import dispatch, retry
from .exceptions import InvalidSubmission
from .models import Job, JobAttempt, Outcome
from .states import Priority, Status, sources_of

log = logging.getLogger("jobqueue.jobs")

MAX_ERROR_MESSAGE = 10_000
MAX_TRACEBACK = 50_000


def job_transition(*, job_id: Any, to: Status, where: dict[str, Any] | None = None, **changes: Any) -> bool:
    """Apply one transition of the state machine with a conditional update.

    Only rows whose status may move to `to` (and that match `where`) change; False means the
    transition was refused because another process got there first or the job moved on.
    """
    rows = Job.objects.filter(pk=job_id, status__in=sources_of(to), **(where or {}))
    return rows.update(status=to, updated_at=timezone.now(), **changes) == 1


def _resolve_run_at(*, delay: float | None, run_at: datetime | None, now: datetime) -> datetime | None:
    if delay is not None and run_at is not None:
        raise InvalidSubmission("give either delay or run_at, not both", field="delay")
    horizon = settings.JOB_MAX_DELAY_SECONDS
    if delay is not None:
        if delay < 0:
            raise InvalidSubmission("delay must be zero or more seconds", field="delay")
        if delay > horizon:
            raise InvalidSubmission(f"delay must be at most {horizon} seconds", field="delay")
        return now + timedelta(seconds=delay) if delay > 0 else None
    if run_at is not None:
        if timezone.is_naive(run_at):
            run_at = timezone.make_aware(run_at, timezone.utc)
        if run_at > now + timedelta(seconds=horizon):
            raise InvalidSubmission(f"run_at must be within {horizon} seconds from now", field="run_at")
        return run_at
    return None


def _check_payload_size(payload: dict) -> None:
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    limit = settings.JOB_MAX_PAYLOAD_BYTES
    if size > limit:
        raise InvalidSubmission(f"payload is {size} bytes; the limit is {limit} bytes", field="payload")


def job_submit(
    *,
    type: str,
    payload: dict,
    owner: Any = None,
    priority: str = Priority.MEDIUM,
    delay: float | None = None,
    run_at: datetime | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Validate and store a job, dispatching it on commit; returns (job, created).

    A repeated idempotency key of the same owner returns the existing job and creates nothing.
    """
    if not isinstance(payload, dict):
        raise InvalidSubmission("payload must be a JSON object", field="payload")
    if priority not in Priority.values:
        raise InvalidSubmission(f"priority must be one of {', '.join(Priority.values)}", field="priority")
    if max_retries is not None and not 0 <= max_retries <= settings.JOB_MAX_RETRIES_LIMIT:
        raise InvalidSubmission(
            f"max_retries must be between 0 and {settings.JOB_MAX_RETRIES_LIMIT}", field="max_retries"
        )
    job_type = registry.get(type)
    _check_payload_size(payload)
    payload = job_type.validate(payload)
    now = timezone.now()
    when = _resolve_run_at(delay=delay, run_at=run_at, now=now)
    if idempotency_key:
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    scheduled = when is not None and when > now
    try:
        with transaction.atomic():
            job = Job.objects.create(
                type=type,
                payload=payload,
                owner=owner,
                priority=priority,
                status=Status.SCHEDULED if scheduled else Status.QUEUED,
                run_at=when,
                max_retries=job_type.max_retries if max_retries is None else max_retries,
                timeout=timeout or job_type.timeout,
                idempotency_key=idempotency_key or None,
            )
            if not scheduled:
                dispatch.send_job_on_commit(job_id=job.id, queue=job.priority, timeout=job.timeout)
    except IntegrityError:
        if not idempotency_key:
            raise
        return Job.objects.get(owner=owner, idempotency_key=idempotency_key), False
    log.info("job submitted id=%s type=%s queue=%s status=%s", job.id, job.type, job.priority, job.status)
    return job, True


@dataclass(frozen=True)
class Claim:
    job_id: str
    type: str
    payload: dict
    attempt: int
    timeout: int | None


def job_claim(*, job_id: Any, worker: str) -> Claim | None:
    """Move a queued job to running and open its attempt; None if someone else has it.

    The conditional update is the lock: of two deliveries of one message, only one claims.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = job_transition(
            job_id=job_id,
            to=Status.RUNNING,
            where={"status": Status.QUEUED},
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
            worker=worker,
            progress=0,
            progress_message="",
        )
        if not claimed:
            return None
        job = Job.objects.only("type", "payload", "attempts", "timeout").get(pk=job_id)
        JobAttempt.objects.create(job_id=job_id, number=job.attempts, started_at=now, worker=worker)
    return Claim(str(job_id), job.type, job.payload, job.attempts, job.timeout)


def _close_attempt(*, job_id: Any, attempt: int, outcome: Outcome, when: datetime, **error: str) -> None:
    JobAttempt.objects.filter(job_id=job_id, number=attempt).update(outcome=outcome, finished_at=when, **error)


def job_succeed(*, job_id: Any, attempt: int, result: Any) -> bool:
    """Record a successful attempt. A stale attempt (the job moved on) changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        done = job_transition(
            job_id=job_id,
            to=Status.SUCCEEDED,
            where={"status": Status.RUNNING, "attempts": attempt},
            result=result,
            finished_at=now,
            progress=100,
            error_type="",
            error_message="",
            error_traceback="",
            reason="",
        )
        if done:
            _close_attempt(job_id=job_id, attempt=attempt, outcome=Outcome.SUCCEEDED, when=now)
    return done


def job_fail(
    *,
    job_id: Any,
    attempt: int,
    error_type: str,
    message: str,
    traceback: str = "",
    permanent: bool = False,
) -> Status | None:
    """Record a failed attempt and move the job on by the retry policy; returns the new status."""
    now = timezone.now()
    max_retries = Job.objects.filter(pk=job_id).values_list("max_retries", flat=True).first()
    if max_retries is None:
        return None
    decision = retry.after_failure(attempt=attempt, max_retries=max_retries, permanent=permanent)
    error = {
        "error_type": error_type[:200],
        "error_message": message[:MAX_ERROR_MESSAGE],
    }
    target = Status.RETRYING if decision.retry else Status.DEAD
    changes: dict[str, Any] = {"error_traceback": traceback[-MAX_TRACEBACK:], "reason": decision.reason[:200]}
    if decision.retry:
        changes["run_at"] = now + timedelta(seconds=decision.delay)
    else:
        changes["finished_at"] = now
    with transaction.atomic():
        moved = job_transition(
            job_id=job_id, to=target, where={"status": Status.RUNNING, "attempts": attempt}, **error, **changes
        )
        if not moved:
            return None
        _close_attempt(
            job_id=job_id,
            attempt=attempt,
            outcome=Outcome.FAILED,
            when=now,
            traceback=changes["error_traceback"],
            **error,
        )
        if target == Status.DEAD:
            job_type = Job.objects.values_list("type", flat=True).get(pk=job_id)
            dispatch.send_dead_letter_on_commit(job_id=job_id, job_type=job_type, reason=decision.reason)
    return target


def job_progress(*, job_id: Any, attempt: int, percent: int, message: str = "") -> bool:
    """Report progress of a running attempt (0-100)."""
    percent = max(0, min(100, int(percent)))
    rows = Job.objects.filter(pk=job_id, status=Status.RUNNING, attempts=attempt)
    return rows.update(progress=percent, progress_message=str(message)[:255], updated_at=timezone.now()) == 1
