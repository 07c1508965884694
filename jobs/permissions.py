"""Who may operate on jobs and queues: staff with the Django model permissions the admin asks for
the same action (view, change or delete jobs; view or change queues). The management API and
the CLI's actor (`manage.py jobs --as USER`) both ask `may_operate`."""

from typing import Any

from rest_framework.permissions import BasePermission

VIEW_JOBS = ("jobs.view_job",)
CHANGE_JOBS = ("jobs.change_job",)
DELETE_JOBS = ("jobs.delete_job",)
VIEW_QUEUES = ("jobs.view_queuestate",)
CHANGE_QUEUES = ("jobs.change_queuestate",)
VIEW_SCHEDULES = ("jobs.view_schedule",)
ADD_SCHEDULES = ("jobs.add_schedule",)
CHANGE_SCHEDULES = ("jobs.change_schedule",)
DELETE_SCHEDULES = ("jobs.delete_schedule",)


def may_operate(user: Any, needed: tuple[str, ...]) -> bool:
    """An active staff user holding every permission of `needed`."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff and user.has_perms(needed))


def may_see_tracebacks(user: Any) -> bool:
    """Tracebacks name server paths and source lines: they are for those who may view every job."""
    return may_operate(user, VIEW_JOBS)


class OperatorPermission(BasePermission):
    """A view names what each method needs in `required_permissions` ({"GET": (...), "POST": (...)});
    HEAD and OPTIONS need what GET needs, and a method it does not name needs its POST's."""

    message = "You need staff status and the permission for this action (as in the admin)."

    def has_permission(self, request, view) -> bool:
        required = view.required_permissions
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = required.get(method) or required.get("POST") or required.get("GET", ())
        return may_operate(request.user, needed)
