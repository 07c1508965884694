"""What operators do to jobs: retry and resubmit dead ones, run waiting ones now, cancel, delete, purge."""

import logging
from datetime import datetime
from typing import Any

import redis
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs.adapters import broker, dispatch
from jobs.adapters.store import ERROR_COLUMNS
from jobs.models import Job, JobAttempt, Outcome
from jobs.rules import states
from jobs.rules.exceptions import InvalidTransition, JobNotFound
from jobs.rules.states import FINISHED, Status
from jobs.services import events
from jobs.services import limits as cluster_limits
from jobs.services.events import JobFacts
from jobs.services.lifecycle import job_transition, jobs_transition
from jobs.services.submit import job_submit, validate_payload

FAILURE_CLEARED = dict.fromkeys(ERROR_COLUMNS, "")  # error type, message, traceback and reason

log = logging.getLogger("jobqueue.jobs")


def _get(job_id: Any) -> Job:
    try:
        return Job.objects.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError, ValidationError):  # ValidationError: not a UUID
        raise JobNotFound(f"no job with id {job_id}") from None


def job_retry(*, job_id: Any, payload: dict | None = None, actor: Any = None) -> Job:
    """Run a dead job again under the same id: attempts start over, the history stays. With
    `payload`, the job runs with the corrected payload (validated like a submission from `actor`,
    the user a surface retries it for: an internal type's payload needs a permission)."""
    job = _get(job_id)
    edit = {} if payload is None else {"payload": validate_payload(job.type, payload, owner=job.owner, actor=actor)}
    if not _retry_dead(Job.objects.filter(pk=job.pk), **edit):
        raise InvalidTransition(f"job {job.pk} is {_get(job.pk).status}; only dead jobs can be retried")
    job.refresh_from_db()
    return job


def job_resubmit(*, job_id: Any, payload: dict | None = None, actor: Any = None) -> Job:
    """Submit a new job with the type, payload and options of an existing one, linked to it. It is
    always a new job: it takes its type's unique key only if no job holds it. A new `payload` is
    `actor`'s choice (an internal type's needs a permission); the original one was checked when
    it was submitted."""
    original = _get(job_id)
    job, _ = job_submit(
        type=original.type,
        payload=original.payload if payload is None else payload,
        owner=original.owner,
        priority=original.priority,
        max_retries=original.max_retries,
        timeout=original.timeout,
        resubmitted_from=original,
        unique_if_free=True,
        actor=None if payload is None else actor,
    )
    return job


def job_cancel(*, job_id: Any, actor: Any = None) -> Job:
    """Cancel a job that has not finished. One that has not started (scheduled, queued, waiting for a
    limit or to retry) never starts; a running one is cancelled at once in the database, its attempt
    closed as cancelled: the worker node running it sees that within JOB_FENCE_CHECK_SECONDS, tells
    the handler (ctx.check() raises JobCancelled) and ends its process after JOB_CANCEL_GRACE
    (tasks.fence); whatever the handler still returns is refused by its serial. `actor`: the user
    who asked, named in the job's reason and its attempt's history."""
    job = _get(job_id)
    by = f"cancelled by {getattr(actor, 'username', '') or 'an operator'}"
    now = timezone.now()
    with transaction.atomic():
        moved = job_transition(states.CANCEL, job_id=job.pk, reason=by, finished_at=now)
        running = not moved
        if running:
            # Fenced by the serial read now, so a cancel never closes an attempt it did not see.
            serial = Job.objects.filter(pk=job.pk, status=Status.RUNNING).values_list("serial", flat=True).first()
            fence = {"serial": serial}
            moved = serial is not None and job_transition(
                states.CANCEL_RUNNING, job_id=job.pk, where=fence, reason=by, finished_at=now, lease_expires_at=None
            )
            if moved:
                attempt = JobAttempt.objects.filter(job_id=job.pk, number=serial)
                attempt.update(outcome=Outcome.CANCELLED, finished_at=now, error_type="Cancelled", error_message=by)
                cluster_limits.wake_after(job_type=job.type, job_id=job.pk)
        if not moved:
            raise InvalidTransition(f"job {job.pk} is {_get(job.pk).status}; a finished job cannot be cancelled")
        events.cancelled(JobFacts(job.pk, job.type, job.priority, job.attempts), by=by, running=running)
    job.refresh_from_db()
    return job


def job_run_now(*, job_id: Any) -> Job:
    """Queue a scheduled (or retrying) job at once instead of at its run_at (the BECOME_DUE move);
    its message goes out after the commit, as the mover would send it."""
    job = _get(job_id)
    with transaction.atomic():
        if not job_transition(states.BECOME_DUE, job_id=job.pk, run_at=timezone.now()):
            raise InvalidTransition(
                f"job {job.pk} is {_get(job.pk).status}; only scheduled or retrying jobs can be run now"
            )
        dispatch.send_jobs_on_commit([(job.pk, job.priority, job.timeout, job.type)])
    job.refresh_from_db()
    return job


def job_delete(*, job_id: Any) -> None:
    """Delete a job and its history; a running job cannot be deleted. The row is locked while its
    status is checked and it is deleted, so a claim or a retry in between waits, then finds no job."""
    job = _get(job_id)
    with transaction.atomic():
        deletable = Job.objects.select_for_update().filter(pk=job.pk).exclude(status=Status.RUNNING)
        if not deletable.exists():
            raise InvalidTransition(f"job {job.pk} is running; cancel is not possible, wait for it to finish")
        Job.objects.filter(pk=job.pk).delete()
    _forget_dead_letters([job.pk])


def _forget_dead_letters(job_ids: list[Any]) -> None:
    """Drop the dead-letter copies of jobs that left dead. The change in the database stands when
    Redis is down: the mover drops the copies once it is back (dead_letters_reconcile)."""
    try:
        broker.forget_dead_letters(job_ids)
    except redis.RedisError as exc:
        log.warning("Redis unavailable (%s); the dead-letter copies of %d jobs go later", exc, len(job_ids))


def jobs_retry_dead(*, job_ids: list[Any] | None = None) -> list[Any]:
    """Retry every dead job (or those of `job_ids`) under its own id; returns the ids requeued."""
    return _retry_dead(Job.objects.all() if job_ids is None else Job.objects.filter(pk__in=job_ids))


def _retry_dead(jobs: QuerySet[Job], **edit: Any) -> list[Any]:
    """The way out of dead (RETRY_DEAD): the dead rows among `jobs` are locked first, so the ids
    returned are exactly those that moved; their messages go out after the commit."""
    with transaction.atomic():
        dead = jobs.filter(status__in=states.RETRY_DEAD.sources).select_for_update(skip_locked=True)
        rows = list(dead.values_list("pk", "priority", "timeout", "type"))
        ids = [row[0] for row in rows]
        # The last error goes with the attempts it came from (their history keeps each one).
        resets = {"attempts": 0, "run_at": None, "finished_at": None, "result": None, **FAILURE_CLEARED}
        jobs_transition(states.RETRY_DEAD, job_ids=ids, **resets, **edit)
        dispatch.send_jobs_on_commit(rows)
    _forget_dead_letters(ids)
    return ids


def jobs_purge_dead(*, finished_before: datetime | None = None, dry_run: bool = False) -> list[Any]:
    """Delete dead jobs (those that died before `finished_before`, if given); returns the ids deleted
    (with `dry_run`, those it would delete, deleting nothing)."""
    dead = Job.objects.filter(status=Status.DEAD)
    if finished_before is not None:
        dead = dead.filter(finished_at__lt=finished_before)
    if dry_run:
        return list(dead.values_list("pk", flat=True))
    with transaction.atomic():
        ids = list(dead.select_for_update(skip_locked=True).values_list("pk", flat=True))
        Job.objects.filter(pk__in=ids).delete()
    _forget_dead_letters(ids)
    return ids


def jobs_purge_finished(*, finished_before: datetime, batch: int = 5000) -> int:
    """Delete succeeded, cancelled and dead jobs that finished before a time, `batch` rows per
    transaction so no lock is held for long; returns how many were deleted."""
    # Oldest first along the created_at index, which old finished jobs lead.
    finished = Job.objects.filter(status__in=FINISHED, finished_at__lt=finished_before).order_by("created_at")
    deleted = 0
    while rows := list(finished.values_list("pk", flat=True)[:batch]):
        with transaction.atomic():
            # Locked as they are read again, so a job an operator retries meanwhile is either
            # deleted before the retry or left alone; a row locked by that retry is skipped.
            locked = Job.objects.filter(pk__in=rows, status__in=FINISHED).select_for_update(skip_locked=True)
            gone = list(locked.values_list("pk", "status"))
            Job.objects.filter(pk__in=[pk for pk, _ in gone]).delete()
        deleted += len(gone)
        _forget_dead_letters([pk for pk, status in gone if status == Status.DEAD])
        if not gone:
            break  # every row of the batch is locked by a change under way: left for the next purge
    return deleted
