"""Changes made outside the admin (API, CLI) written to the admin's history (LogEntry), with their actor."""

from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType

from jobs.models import Job

__all__ = ["ADDITION", "CHANGE", "DELETION", "record", "record_jobs"]


def record(*, user: Any, obj: Any, message: str, flag: int = CHANGE) -> None:
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[obj], action_flag=flag, change_message=message, single_object=True
    )


def record_jobs(*, user: Any, ids: Iterable[Any], message: str, flag: int = CHANGE) -> None:
    """One entry per job of a bulk change, by id: the jobs may be gone (a purge)."""
    content_type = ContentType.objects.get_for_model(Job, for_concrete_model=False)
    shared = {"user_id": user.pk, "content_type": content_type, "action_flag": flag, "change_message": message}
    LogEntry.objects.bulk_create(
        [LogEntry(object_id=str(pk), object_repr=str(pk), **shared) for pk in ids], batch_size=1000
    )
