"""Reads of jobs that are more than a lookup."""

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet

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


def counts_by_type_and_status(*, since: datetime, until: datetime) -> list[dict]:
    rows = (
        Job.objects.filter(created_at__gte=since, created_at__lt=until)
        .values("type", "status")
        .annotate(count=Count("id"))
        .order_by("type", "status")
    )
    return list(rows)


def running_attempt(*, job_id: Any) -> int | None:
    """The attempt number of a running job, or None if it is not running."""
    return Job.objects.filter(pk=job_id, status=Status.RUNNING).values_list("attempts", flat=True).first()
