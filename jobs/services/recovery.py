"""The mover's writes: release due jobs, retry lost ones, send again what the broker lost.

Safe to run in several movers at once: due rows are taken with FOR UPDATE SKIP LOCKED (on SQLite the
write transaction is taken at BEGIN, so movers simply take turns), and every other change is a
fenced conditional update."""

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from jobs.adapters import broker, dispatch
from jobs.models import Job, Outcome, PendingDispatch
from jobs.rules import states
from jobs.rules.states import WAITING_FOR_TIME, Status
from jobs.services.lifecycle import job_fail, jobs_transition

log = logging.getLogger("jobqueue.mover")


def jobs_release_due(*, limit: int | None = None, now: datetime | None = None) -> int:
    """Queue the scheduled and retrying jobs whose time has come (by `now`); returns how many."""
    now = now or timezone.now()
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
    lost = Job.objects.filter(status=Status.RUNNING, lease_expires_at__lt=Now())  # the database's clock, as it was set
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


# Queued jobs sent again per statement, and compared with a queue's messages per sweep at most.
RESEND_BATCH = 1000
COMPARE_BATCH = 5000
# The share of the mover's time the comparison may take: after reading a long list for T
# seconds, that queue's next comparison waits (1 / share - 1) * T.
COMPARE_SHARE = 0.1

# The mover's place in each check, kept between sweeps (in this process only): when this mover
# last saw the data marker, where each queue's comparison goes on, and when it may run again.
_marker_seen_at: float | None = None
_compare_after: dict[str, tuple[datetime, Any]] = {}
_compare_not_before: dict[str, float] = {}


def jobs_redispatch_missing() -> int:
    """Send again the queued jobs whose message the broker lost; how many. Two checks, on every
    queue not paused (docs/operations.md, "Redis persistence and what it means for loss"): after
    Redis lost its data (the mover's marker there is gone), every job queued before the loss; else
    the jobs queued longer than JOB_REDISPATCH_AFTER with no message in their queue or in flight.
    One mover sends a job (its `updated_at` moves under a row lock first), to the front of its
    queue; a false positive costs a duplicate message, which the claim turns into a no-op."""
    paused = dispatch.paused_queues(fresh=True)
    queues = [queue for queue in states.QUEUES if queue not in paused]
    sent = _after_data_loss(queues)
    for queue in queues:
        sent += _missing_from(queue)
    return sent


def _after_data_loss(queues: list[str]) -> int:
    global _marker_seen_at
    if not broker.data_marker_missing():
        _marker_seen_at = time.time()
        return 0
    cutoff = _lost_before()
    lost = Job.objects.filter(status=Status.QUEUED, priority__in=queues, updated_at__lt=cutoff)
    sent = 0
    # Newest first: each batch goes in front of the one before, so the oldest job runs first.
    while batch := _send_again(lost.order_by("-updated_at"), limit=RESEND_BATCH):
        sent += batch
    _marker_seen_at = time.time()
    if sent:
        log.warning("Redis lost its data: sent %d queued jobs again, queued before %s", sent, cutoff.isoformat())
    return sent


def _lost_before() -> datetime:
    """The time before which a queued job's message may be lost: when Redis started, if it
    restarted since this mover last saw the marker (plus 2 s: its uptime is in whole seconds, and
    hosts' clocks differ a little), else now (a flush, or a mover that never saw the marker)."""
    now = time.time()
    started = broker.started_at()
    restarted = _marker_seen_at is not None and started > _marker_seen_at
    return datetime.fromtimestamp(min(now, started + 2) if restarted else now, tz=UTC)


def _missing_from(queue: str) -> int:
    """Compare the next COMPARE_BATCH stale queued jobs of `queue` with its messages; send again
    those that have none."""
    if time.monotonic() < _compare_not_before.get(queue, 0.0):
        return 0
    window = settings.JOB_REDISPATCH_AFTER
    stale = Job.objects.filter(
        status=Status.QUEUED, priority=queue, updated_at__lt=timezone.now() - timedelta(seconds=window)
    )
    candidates = _next_candidates(queue, stale)
    if not candidates:
        return 0
    began = time.monotonic()
    ids = {str(pk) for pk in candidates}
    waiting = broker.queued_job_ids(queue, among=ids)
    took = time.monotonic() - began
    _compare_not_before[queue] = time.monotonic() + took * (1 / COMPARE_SHARE - 1)
    if waiting is None:
        return 0
    in_flight = broker.in_flight_job_ids(delivered_after=time.time() - window)
    missing = [pk for pk in candidates if str(pk) not in waiting and str(pk) not in in_flight]
    if not missing:
        return 0
    sent = _send_again(stale.filter(pk__in=missing).order_by("-updated_at"), limit=len(missing))
    if sent:
        log.warning("sent %d queued jobs again that the broker did not hold (queue %s)", sent, queue)
    return sent


def _next_candidates(queue: str, stale: QuerySet) -> list[Any]:
    """Ids of the next COMPARE_BATCH jobs of `stale`, oldest first, after those of the last sweep;
    from the oldest again once the end is reached."""
    after = _compare_after.get(queue)
    page = stale
    if after is not None:
        page = stale.filter(Q(updated_at__gt=after[0]) | Q(updated_at=after[0], pk__gt=after[1]))
    rows = list(page.order_by("updated_at", "pk").values_list("updated_at", "pk")[:COMPARE_BATCH])
    if len(rows) < COMPARE_BATCH:
        _compare_after.pop(queue, None)
    else:
        _compare_after[queue] = rows[-1]
    return [pk for _, pk in rows]


def _send_again(jobs: QuerySet, *, limit: int) -> int:
    """Send the first `limit` of `jobs` (queued) again, to the front of their queues; how many.
    Their `updated_at` moves first, under a row lock: another mover's sweep no longer takes them."""
    with transaction.atomic():
        rows = list(jobs.select_for_update(skip_locked=True).values_list("pk", "priority", "timeout", "type")[:limit])
        if not rows:
            return 0
        Job.objects.filter(pk__in=[row[0] for row in rows]).update(updated_at=timezone.now())
    dispatch.send_jobs(rows, front=True)
    return len(rows)


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
    Raises while the broker is still unreachable (the mover tries again next round). A pending job
    that moved on meanwhile (cancelled, or run from another message) is just forgotten."""
    rows = list(PendingDispatch.objects.values_list("job_id", "queue", "timeout", "job__type", "job__status")[:limit])
    if not rows:
        return 0
    due = [row[:4] for row in rows if row[4] == Status.QUEUED]
    sent = dispatch.send_jobs(due)
    PendingDispatch.objects.filter(job_id__in=[row[0] for row in rows]).delete()
    if sent:
        log.warning("published %d jobs that waited for the broker to come back", sent)
    return sent
