"""Reads of jobs that are more than a lookup."""

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, QuerySet

from jobqueue_site.celery import QUEUES

from . import broker
from .exceptions import JobNotFound
from .models import Job
from .states import Status


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """Staff see every job; everyone else only their own."""
    if user.is_staff:
        return Job.objects.all()
    return Job.objects.filter(owner=user)


def job_for_user(*, job_id: Any, user: Any) -> Job:
    """The job, if `user` may see it; another owner's job is reported as missing."""
    try:
        return jobs_visible_to(user).prefetch_related("history").get(pk=uuid.UUID(str(job_id)))
    except (Job.DoesNotExist, ValueError):
        raise JobNotFound(f"no job with id {job_id}") from None


def job_by_id(*, job_id: Any) -> Job:
    try:
        return Job.objects.prefetch_related("history").get(pk=uuid.UUID(str(job_id)))
    except (Job.DoesNotExist, ValueError):
        raise JobNotFound(f"no job with id {job_id}") from None


def jobs_filtered(*, status: str | None = None, type: str | None = None, priority: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.all()
    for name, value in (("status", status), ("type", type), ("priority", priority)):
        if value:
            jobs = jobs.filter(**{name: value})
    return jobs.order_by("-created_at")


def job_stats() -> dict:
    """Jobs per status (every status listed) and the depth of each broker queue."""
    counts = dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "statuses": {status: counts.get(status, 0) for status in Status.values},
        "queues": broker.queue_lengths(),
        "dead_letter": broker.dead_letter_length(),
    }


def counts_by_type_and_status(*, since: datetime, until: datetime) -> list[dict]:
    rows = (
        Job.objects.filter(created_at__gte=since, created_at__lt=until)
        .values("type", "status")
        .annotate(count=Count("id"))
        .order_by("type", "status")
    )
    return list(rows)


def running_serial(*, job_id: Any) -> int | None:
    """The serial of a running job's current attempt, or None if it is not running."""
    return Job.objects.filter(pk=job_id, status=Status.RUNNING).values_list("attempts_total", flat=True).first()


def running_on(*, worker: str) -> list[tuple[Any, int]]:
    """(job id, serial) of the jobs running on a worker node."""
    return list(Job.objects.filter(status=Status.RUNNING, worker=worker).values_list("pk", "attempts_total"))


def next_due_at() -> datetime | None:
    """When the earliest scheduled or retrying job is due."""
    waiting = Job.objects.filter(status__in=(Status.SCHEDULED, Status.RETRYING), run_at__isnull=False)
    return waiting.order_by("run_at").values_list("run_at", flat=True).first()


def queue_latencies(*, now: datetime) -> dict[str, float]:
    """Seconds the oldest queued job of each queue has waited since it was queued (0 for none)."""
    oldest = dict(
        Job.objects.filter(status=Status.QUEUED)
        .values_list("priority")
        .annotate(oldest=Min("updated_at"))
        .values_list("priority", "oldest")
    )
    return {queue: max((now - oldest[queue]).total_seconds(), 0.0) if queue in oldest else 0.0 for queue in QUEUES}


def scheduled_count() -> int:
    """Jobs waiting for their run_at (status scheduled)."""
    return Job.objects.filter(status=Status.SCHEDULED).count()
