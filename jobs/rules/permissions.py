"""Who may operate on jobs and queues: staff with the Django model permissions the admin asks for
the same action (view, change or delete jobs; view or change queues). The management API, the
CLI's actor (`manage.py jobs --as USER`) and the selectors of whose jobs a user sees all ask
`may_operate`, so staff see and do what their permissions allow and no more."""

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
SUBMIT_FOR_OTHERS = ("jobs.submit_for_others",)


def may_operate(user: Any, needed: tuple[str, ...]) -> bool:
    """An active staff user holding every permission of `needed`."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff and user.has_perms(needed))


def may_view_every_job(user: Any) -> bool:
    """Staff who may view jobs see everyone's; any other user (staff without the permission too)
    sees only the jobs it submitted."""
    return may_operate(user, VIEW_JOBS)


def may_see_tracebacks(user: Any) -> bool:
    """Tracebacks name server paths and source lines: they are for those who may view every job."""
    return may_view_every_job(user)


def may_cancel(user: Any, job: Any) -> bool:
    """A job's owner may cancel it, and so may staff who may change jobs (the job must be visible
    to the user first: see selectors.job_for_user)."""
    return bool(user and job.owner_id is not None and job.owner_id == user.pk) or may_operate(user, CHANGE_JOBS)


def may_submit_for(actor: Any, owner: Any) -> bool:
    """Submitting a job in another user's name needs jobs.submit_for_others (and staff status)."""
    return owner is None or owner.pk == actor.pk or may_operate(actor, SUBMIT_FOR_OTHERS)


class OperatorPermission(BasePermission):
    """A view names what each method needs in `required_permissions` ({"GET": (...), "POST": (...)});
    HEAD and OPTIONS need what GET needs, and a method it does not name needs its POST's."""

    message = "You need staff status and the permission for this action (as in the admin)."

    def has_permission(self, request, view) -> bool:
        required = view.required_permissions
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = required.get(method) or required.get("POST") or required.get("GET", ())
        return may_operate(request.user, needed)
