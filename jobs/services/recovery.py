"""The mover's writes: release due jobs, retry lost ones, send again what the broker lost.

Safe to run in several movers at once: due rows are taken with FOR UPDATE SKIP LOCKED
(on SQLite the write transaction is taken at BEGIN, so movers simply take turns), and every
other change is a fenced conditional update.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs import broker, dispatch, states
from jobs.models import Job, Outcome, PendingDispatch
from jobs.states import WAITING_FOR_TIME, Status

from .lifecycle import job_fail, jobs_transition

log = logging.getLogger("jobqueue.mover")


def jobs_release_due(*, limit: int | None = None) -> int:
    """Queue the scheduled and retrying jobs whose time has come; returns how many."""
    now = timezone.now()
    limit = limit or settings.JOB_MOVER_BATCH
    with transaction.atomic():
        due = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(status__in=WAITING_FOR_TIME, run_at__lte=now)
            .order_by("run_at")
            .values_list("pk", "priority", "timeout", "type")[:limit]
        )
        if not due:
            return 0
        jobs_transition(states.BECOME_DUE, job_ids=[row[0] for row in due])
        dispatch.send_jobs_on_commit(due)
    return len(due)


def jobs_requeue_lost() -> int:
    """Fail the running attempts whose lease ran out (their worker died); the retry policy decides next."""
    lost = Job.objects.filter(status=Status.RUNNING, lease_expires_at__lt=timezone.now())
    count = 0
    for pk, serial, worker, lease in lost.values_list("pk", "serial", "worker", "lease_expires_at")[:500]:
        moved = job_fail(
            job_id=pk,
            serial=serial,
            error_type="WorkerLost",
            message=f"worker lost: {worker or 'unknown'} renewed no lease; it ran out at {lease.isoformat()}",
            outcome=Outcome.LOST,
        )
        count += moved is not None
    if count:
        log.warning("requeued %d jobs whose worker was lost", count)
    return count


def jobs_redispatch_missing() -> int:
    """Send again the queued jobs the broker no longer holds (e.g. Redis restarted empty).

    Looks only at queues that are not paused and whose list is empty: a queued job there that
    no worker received in the last JOB_REDISPATCH_AFTER seconds has no message left. A false
    positive only costs a duplicate message, which the claim turns into a no-op.
    """
    paused = dispatch.paused_queues(fresh=True)
    empty = [queue for queue, length in broker.queue_lengths().items() if length == 0 and queue not in paused]
    if not empty:
        return 0
    window = settings.JOB_REDISPATCH_AFTER
    stale = Job.objects.filter(
        status=Status.QUEUED, priority__in=empty, updated_at__lt=timezone.now() - timedelta(seconds=window)
    )
    candidates = list(stale.values_list("pk", "priority", "timeout", "type")[:1000])
    if not candidates:
        return 0
    in_flight = broker.in_flight_job_ids(delivered_after=time.time() - window)
    missing = [row for row in candidates if str(row[0]) not in in_flight]
    dispatch.send_jobs(missing)
    Job.objects.filter(pk__in=[row[0] for row in missing], status=Status.QUEUED).update(updated_at=timezone.now())
    if missing:
        log.warning("sent %d queued jobs again that the broker did not hold", len(missing))
    return len(missing)


def dead_letters_reconcile() -> int:
    """Drop the dead-letter copies of jobs no longer dead (retried or deleted while Redis was
    down); how many."""
    indexed = broker.dead_letter_indexed_ids()
    if not indexed:
        return 0
    dead = {str(pk) for pk in Job.objects.filter(pk__in=indexed, status=Status.DEAD).values_list("pk", flat=True)}
    stale = [job_id for job_id in indexed if job_id not in dead]
    if stale:
        broker.forget_dead_letters(stale)
        log.warning("dropped the dead-letter copies of %d jobs that are no longer dead", len(stale))
    return len(stale)


def jobs_dispatch_pending(*, limit: int = 1000) -> int:
    """Publish the queued jobs whose publish failed while the broker was down; how many went out.

    Raises while the broker is still unreachable (the mover tries again next round). A pending
    job that moved on meanwhile (cancelled, or run from another message) is just forgotten.
    """
    rows = list(PendingDispatch.objects.values_list("job_id", "queue", "timeout", "job__type", "job__status")[:limit])
    if not rows:
        return 0
    due = [row[:4] for row in rows if row[4] == Status.QUEUED]
    sent = dispatch.send_jobs(due)
    PendingDispatch.objects.filter(job_id__in=[row[0] for row in rows]).delete()
    if sent:
        log.warning("published %d jobs that waited for the broker to come back", sent)
    return sent
