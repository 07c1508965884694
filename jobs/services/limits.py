"""Cluster-wide limits: the limited claim, waiting and waking, and the run-time overrides.

A claim of a limited type serialises on its (type, partition) (a transaction-scoped advisory lock on
PostgreSQL; SQLite serialises writers anyway), counts the partition's running jobs and its starts in
the rate's window, and then either claims the job as usual or moves it to `waiting` with the reason
and, for a rate, the time the window frees (`run_at`). Nothing waits in a worker: the worker acks
the message and goes on with other work. For a limit with a concurrency only, the lock and a claim
guarded by the count go first in one round trip (`claim_within`); only when that claims nothing does
the claim above decide why.

A waiting job is queued again (WAKE, published on commit) when an attempt of its partition ends
(`wake_after`), when its `run_at` comes (`jobs_wake_due`, each mover round), and by the mover's
sweep (`jobs_wake_waiting`), which wakes any partition with free capacity: a lost wake can only
delay a job, never strand it. A woken job goes through the limited claim again."""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from jobs.adapters import dispatch, metrics
from jobs.adapters.store import store
from jobs.models import Job, JobLimit, JobStart
from jobs.rules import registry, states
from jobs.rules.exceptions import InvalidLimit
from jobs.rules.limits import MAX_PERIOD_SECONDS, Limit, LimitProblem, Rate, make_limit
from jobs.rules.states import Priority, Status
from jobs.services import limit_selectors

log = logging.getLogger("jobqueue.limits")

# Waiting jobs are woken highest priority first, then oldest first.
PRIORITY_RANK = Case(
    *(When(priority=name, then=Value(rank)) for rank, name in enumerate(Priority.values)),
    default=Value(len(Priority.values)),
    output_field=IntegerField(),
)
WAKE_BATCH = 500
# Namespace of the advisory locks, so they meet no other user's.
LOCK_SPACE = "jobqueue.limit"


def _lock_name(job_type: str, key: str) -> str:
    return f"{LOCK_SPACE}\x1f{job_type}\x1f{key}"


def _serialised_running(*, job_type: str, key: str, limit: Limit) -> int | None:
    """Take the (type, partition)'s lock until the transaction ends (one limited claim at a
    time), then count its running jobs if the limit has a concurrency (None if not)."""
    name = _lock_name(job_type, key)
    if limit.concurrency is None:
        store().serialise(name)
        return None
    return store().serialised_running_count(name=name, job_type=job_type, limit_key=key)


def _for(key: str) -> str:
    return f" for {key}" if key else ""


def _verdict(
    *, job_type: str, key: str, limit: Limit, running: int | None, now: datetime
) -> tuple[str, datetime | None] | None:
    """Why a job of (type, partition) may not start now, and when its rate window frees; None if
    it may. `running`: how many of the partition run (under its lock), None without a concurrency."""
    if limit.concurrency is not None and running is not None and running >= limit.concurrency:
        return f"concurrency {limit.concurrency} of {job_type}{_for(key)} reached", None
    if limit.rate is not None:
        starts = limit_selectors.recent_starts(job_type=job_type, key=key, seconds=limit.rate.seconds, now=now)
        frees_at = _frees_at(rate=limit.rate, starts=starts)
        if frees_at is not None:
            return f"rate {limit.rate} of {job_type}{_for(key)} reached", frees_at
    return None


def _frees_at(*, rate: Rate, starts: list[datetime]) -> datetime | None:
    """When a window holding `starts` (oldest first) has room for one more; None if it has now."""
    if len(starts) < rate.count:
        return None
    return starts[len(starts) - rate.count] + timedelta(seconds=rate.seconds)


def claim_or_wait(*, job_id: Any, worker: str, job_type: str, limit: Limit) -> tuple[tuple | None, str, datetime]:
    """The limited claim: (the store's claim row, or None when the job waits or is not queued, the
    job's partition, the attempt's start). Only a limit with a key reads the job (its payload and
    owner) first. The start is taken once the connection is open and the payload read, right before
    the claim: the attempt history is what shows a limit was kept, and a start taken before a slow
    reconnect would show an attempt as started while the one before it still ran."""
    key = ""
    if limit.key:
        found = Job.objects.filter(pk=job_id, status=Status.QUEUED).values_list("payload", "owner_id").first()
        if found is None:
            return None, "", timezone.now()  # not queued any more: another delivery has it, or it was cancelled
        key = limit.partition(found[0], owner=found[1])  # payload and owner never change: read outside the lock
    connection.ensure_connection()
    now = timezone.now()
    lease = timedelta(seconds=settings.JOB_LEASE_SECONDS)
    if limit.rate is None:
        # A concurrency only: the usual case, a free slot, is one guarded claim. Without one (or
        # if the job is not queued) the serialised claim below says which, and makes the job wait.
        row = store().claim_within(
            name=_lock_name(job_type, key),
            concurrency=limit.concurrency,
            job_type=job_type,
            limit_key=key,
            job_id=job_id,
            worker=worker,
            now=now,
            lease=lease,
        )
        if row is not None:
            return row, key, now
    with transaction.atomic():
        running = _serialised_running(job_type=job_type, key=key, limit=limit)
        verdict = _verdict(job_type=job_type, key=key, limit=limit, running=running, now=now)
        if verdict is not None:
            reason, frees_at = verdict
            changes = {"reason": reason[:200], "run_at": frees_at, "limit_key": key, "worker": ""}
            if store().transition(Job.objects.filter(pk=job_id), move=states.WAIT, where=None, changes=changes):
                transaction.on_commit(lambda: metrics.record_limit_wait(type=job_type))
                log.info("job %s waits: %s", job_id, reason)
            return None, key, now
        row = store().claim(job_id=job_id, worker=worker, now=now, lease=lease, limit_key=key)
        if row is not None and limit.rate is not None:
            JobStart.objects.create(type=job_type, limit_key=key, at=now)
        return row, key, now


def _wake_group(*, job_type: str, key: str, now: datetime) -> int:
    """Queue again as many waiting jobs of (type, partition) as its limits have room for, best
    first; those left that were due (`run_at` passed) wait for the next free time. How many woke."""
    waiting = Job.objects.filter(status=Status.WAITING, type=job_type, limit_key=key)
    if not waiting.exists():
        return 0  # the usual case after an attempt: nobody waits
    limit = limit_selectors.effective_limit(job_type)
    room, queued, starts = WAKE_BATCH, 0, []
    if limit.limits:
        queued = Job.objects.filter(status=Status.QUEUED, type=job_type, limit_key=key).count()
        if limit.concurrency is not None:
            room = min(room, limit.concurrency - limit_selectors.running_count(job_type=job_type, key=key) - queued)
        if limit.rate is not None:
            starts = limit_selectors.recent_starts(job_type=job_type, key=key, seconds=limit.rate.seconds, now=now)
            room = min(room, limit.rate.count - len(starts) - queued)
    woken: list[tuple] = []
    if room > 0:
        best = waiting.select_for_update(skip_locked=True).order_by(PRIORITY_RANK, "created_at")
        woken = list(best.values_list("pk", "priority", "timeout", "type")[:room])
    # The queued and the woken jobs start about now: the window frees for the next one a period on.
    next_free = _frees_at(rate=limit.rate, starts=starts + [now] * (queued + len(woken))) if limit.rate else None
    if woken:
        store().transition(
            Job.objects.filter(pk__in=[row[0] for row in woken]),
            move=states.WAKE,
            where=None,
            changes={"run_at": None, "reason": ""},
        )
        dispatch.send_jobs_on_commit(woken)
    # Due waits that found no room: not due again until the window frees (or a slot's wake).
    waiting.filter(run_at__lte=now).exclude(pk__in=[row[0] for row in woken]).update(
        run_at=next_free if next_free and next_free > now else None
    )
    return len(woken)


def wake_after(*, job_type: str, job_id: Any = None, key: str | None = None, waiting: bool | None = None) -> int:
    """An attempt of a job of `job_type` ended (it left `running`): wake the best waiting job of its
    partition if there is room. Free for unlimited types: no query. Call inside the transaction
    that moved the job; the wake is published on its commit. `waiting`: whether a job of the
    partition waits, when the caller already knows (the success statement tells)."""
    if waiting is False or not limit_selectors.effective_limit(job_type).limits:
        return 0
    if key is None and job_id is not None:
        key = Job.objects.filter(pk=job_id).values_list("limit_key", flat=True).first()
    if key is None:
        return 0  # claimed before the type had limits: it held no slot
    if waiting is None and not store().any_waiting(job_type=job_type, limit_key=key):
        return 0  # the usual case: nobody waits (looked at outside a transaction of its own)
    with transaction.atomic():
        return _wake_group(job_type=job_type, key=key, now=timezone.now())


def _wake_groups(groups: set[tuple[str, str]]) -> int:
    woken = 0
    now = timezone.now()
    for job_type, key in sorted(groups):
        with transaction.atomic():
            woken += _wake_group(job_type=job_type, key=key or "", now=now)
    if woken:
        log.info("woke %d jobs waiting for a limit", woken)
    return woken


def jobs_wake_due() -> int:
    """Wake the jobs whose rate window has freed (their `run_at` came); each mover round."""
    due = Job.objects.filter(status=Status.WAITING, run_at__lte=timezone.now())
    return _wake_groups(set(due.values_list("type", "limit_key").distinct()[:WAKE_BATCH]))


def jobs_wake_waiting() -> int:
    """The mover's safety net: wake waiting jobs of every partition that has room now (a wake that
    was lost, a limit raised or cleared); how many woke."""
    waiting = Job.objects.filter(status=Status.WAITING)
    return _wake_groups(set(waiting.values_list("type", "limit_key").distinct()[:WAKE_BATCH]))


def job_starts_prune(*, now: datetime | None = None) -> int:
    """Delete starts older than the longest rate window; how many."""
    now = now or timezone.now()
    deleted, _ = JobStart.objects.filter(at__lt=now - timedelta(seconds=MAX_PERIOD_SECONDS)).delete()
    return deleted


def _checked(*, type: str, concurrency: int | None, rate: str | None, limit_key: str | None) -> Limit:
    registry.get(type)  # UnknownJobType names the field `type`
    try:
        return make_limit(concurrency=concurrency, rate=rate, limit_key=limit_key)
    except LimitProblem as exc:
        raise InvalidLimit(str(exc), field=exc.field) from None


def limit_set(
    *, type: str, concurrency: int | None = None, rate: str | None = None, limit_key: str | None = None, by: str = ""
) -> JobLimit:
    """Override the limits of `type` at run time (all of them: what is not given is not limited).
    Takes effect in every process within JOB_LIMIT_CACHE_SECONDS; raised limits wake waiting jobs
    at the mover's next sweep."""
    limit = _checked(type=type, concurrency=concurrency, rate=rate, limit_key=limit_key)
    fields = {
        "concurrency": limit.concurrency,
        "rate": str(limit.rate) if limit.rate else "",
        "limit_key": limit.key,
        "changed_by": by[:150],
    }
    override, _ = JobLimit.objects.update_or_create(type=type, defaults=fields)
    limit_selectors.forget_overrides()
    log.info("limits of %s set to %s by %s", type, limit.describe(), by or "unknown")
    return override


def limit_clear(*, type: str, by: str = "") -> JobLimit | None:
    """Drop the run-time override of `type`: its code's limits apply again. The override dropped
    (unsaved now, for the history), or None if there was none."""
    registry.get(type)
    override = JobLimit.objects.filter(type=type).first()
    if override is None:
        return None
    JobLimit.objects.filter(pk=override.pk).delete()
    limit_selectors.forget_overrides()
    log.info("limits of %s back to the code's by %s", type, by or "unknown")
    return override
