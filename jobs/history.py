"""Changes made outside the admin (API) written to the admin's history (LogEntry), with their actor."""

from typing import Any

from django.contrib.admin.models import CHANGE, DELETION, LogEntry

__all__ = ["CHANGE", "DELETION", "record"]


def record(*, user: Any, obj: Any, message: str, flag: int = CHANGE) -> None:
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[obj], action_flag=flag, change_message=message, single_object=True
    )
