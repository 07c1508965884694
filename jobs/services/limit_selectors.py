"""Reads of the cluster-wide limits: each type's effective limit (a run-time override, else the
code's), and their usage now (running, starts in the window, waiting)."""

import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from jobs.adapters.store import store
from jobs.models import Job, JobLimit, JobStart
from jobs.rules import registry
from jobs.rules.exceptions import UnknownJobType
from jobs.rules.limits import UNLIMITED, Limit, LimitProblem, make_limit
from jobs.rules.states import Status

_lock = threading.Lock()
_cache: tuple[float, dict[str, Limit]] = (0.0, {})


def _stored(row: JobLimit) -> Limit:
    try:
        return make_limit(concurrency=row.concurrency, rate=row.rate or None, limit_key=row.limit_key or None)
    except LimitProblem:  # written past the services (by hand in SQL): the code's limits hold
        return code_limit(row.type)


def overrides(*, fresh: bool = False) -> dict[str, Limit]:
    """The run-time overrides by type, read from the database at most every JOB_LIMIT_CACHE_SECONDS."""
    global _cache
    with _lock:
        expires, known = _cache
        if fresh or time.monotonic() >= expires:
            known = {row.type: _stored(row) for row in JobLimit.objects.all()}
            _cache = (time.monotonic() + settings.JOB_LIMIT_CACHE_SECONDS, known)
        return known


def forget_overrides() -> None:
    """Drop this process's cached overrides (after one is set or cleared)."""
    global _cache
    with _lock:
        _cache = (0.0, {})


def code_limit(job_type: str) -> Limit:
    try:
        return registry.get(job_type).limit
    except UnknownJobType:
        return UNLIMITED


def effective_limit(job_type: str) -> Limit:
    """The limit a claim of `job_type` obeys: its override if one is set, else the code's."""
    found = overrides().get(job_type)
    return code_limit(job_type) if found is None else found


def any_limits() -> bool:
    """Whether any type has a limit now (in code or by an override)."""
    return any(limit.limits for limit in overrides().values()) or any(
        code_limit(name).limits for name in registry.names()
    )


def running_count(*, job_type: str, key: str) -> int:
    return store().running_count(job_type=job_type, limit_key=key)


def recent_starts(*, job_type: str, key: str, seconds: int, now: datetime) -> list[datetime]:
    """When the jobs of (type, partition) started in the last `seconds`, oldest first."""
    window = JobStart.objects.filter(type=job_type, limit_key=key, at__gt=now - timezone.timedelta(seconds=seconds))
    return list(window.order_by("at").values_list("at", flat=True))


def limited_types() -> list[str]:
    """Every type with a limit in code or an override row, sorted."""
    return sorted({name for name in registry.names() if code_limit(name).limits} | set(overrides(fresh=True)))


def limits_overview(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each limited type (or one with an override): its effective and code limits, where the
    effective one comes from, and its usage: running now, starts in the rate's window, waiting."""
    now = now or timezone.now()
    stored = {row.type: row for row in JobLimit.objects.all()}
    return [limit_detail(job_type=job_type, now=now, stored=stored.get(job_type)) for job_type in limited_types()]


def limit_detail(*, job_type: str, now: datetime | None = None, stored: JobLimit | None = None) -> dict[str, Any]:
    """One type's limits and usage (see `limits_overview`); raises UnknownJobType."""
    registry.get(job_type)
    now = now or timezone.now()
    stored = stored or JobLimit.objects.filter(type=job_type).first()
    limit = effective_limit(job_type) if stored is None else _stored(stored)
    code = code_limit(job_type)
    jobs = Job.objects.filter(type=job_type)
    running = jobs.filter(status=Status.RUNNING, limit_key__isnull=False).count()
    waiting = jobs.filter(status=Status.WAITING).count()
    starts = 0
    if limit.rate is not None:
        since = now - timezone.timedelta(seconds=limit.rate.seconds)
        starts = JobStart.objects.filter(type=job_type, at__gt=since).count()
    return {
        "type": job_type,
        "concurrency": limit.concurrency,
        "rate": str(limit.rate) if limit.rate else None,
        "limit_key": limit.key or None,
        "source": "override" if stored is not None else "code",
        "describe": limit.describe(),
        "code": {
            "concurrency": code.concurrency,
            "rate": str(code.rate) if code.rate else None,
            "limit_key": code.key or None,
        },
        "running": running,
        "starts_in_window": starts,
        "waiting": waiting,
        "changed_by": stored.changed_by if stored else "",
        "changed_at": stored.changed_at if stored else None,
    }


def waiting_by_type() -> dict[str, int]:
    """Jobs waiting for a limit's slot, per type (the metrics' gauge)."""
    rows = Job.objects.filter(status=Status.WAITING).values_list("type").annotate(n=Count("id"))
    return dict(rows.values_list("type", "n"))
