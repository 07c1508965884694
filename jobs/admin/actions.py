"""What the admin does to jobs and queues: always through the services, always logged to the history."""

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from jobs import services
from jobs.models import Job, QueueState
from jobs.rules.exceptions import JobQueueError


class CheckedSelection:
    """A changelist action on a selection that holds something other than ids of the model (a
    forged `_selected_action`) is a 400 naming it, not a 500 from the query."""

    def response_action(self, request: HttpRequest, queryset: Any, **kwargs: Any) -> HttpResponse | None:
        key = self.model._meta.pk
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                key.to_python(value)
            except (ValidationError, ValueError):
                name = self.model._meta.verbose_name
                what = f"{helpers.ACTION_CHECKBOX_NAME}: {value[:100]!r} is not the id of a {name}"
                return HttpResponseBadRequest(what, content_type="text/plain; charset=utf-8")
        return super().response_action(request, queryset, **kwargs)  # Django 6.1: action_location


# name -> (service call with the job's id and the user who acts, past tense for messages and the
# admin history). Cancel takes running jobs too: their handler is stopped (tasks.fence).
OPERATIONS = {
    "retry": (lambda job_id, user: services.job_retry(job_id=job_id), "retried"),
    "resubmit": (lambda job_id, user: services.job_resubmit(job_id=job_id), "resubmitted"),
    "cancel": (lambda job_id, user: services.job_cancel(job_id=job_id, actor=user), "cancelled"),
    "run_now": (lambda job_id, user: services.job_run_now(job_id=job_id), "queued now"),
}


def operate(model_admin: admin.ModelAdmin, request: HttpRequest, jobs: Iterable[Job], name: str) -> list[Job]:
    """Apply one operation to each job, logging each success; returns the jobs it produced."""
    call, verb = OPERATIONS[name]
    produced, refused = [], []
    for job in jobs:
        try:
            result = call(job.pk, request.user)
        except JobQueueError as exc:
            refused.append(str(exc))
            continue
        produced.append(result)
        note = f"{verb.capitalize()} from the admin" + (f" as job {result.pk}" if name == "resubmit" else "")
        model_admin.log_change(request, job, note)
    if produced:
        model_admin.message_user(request, f"{verb.capitalize()} {len(produced)} job(s).", messages.SUCCESS)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        model_admin.message_user(request, f"Not {verb}: {refused[0]}{more}", messages.WARNING)
    return produced


def retry_with_payload(model_admin: admin.ModelAdmin, request: HttpRequest, job: Job, payload: dict) -> Job:
    """Retry a dead job with an edited payload; raises JobQueueError when refused."""
    retried = services.job_retry(job_id=job.pk, payload=payload, actor=request.user)
    model_admin.log_change(request, job, "Retried from the admin with an edited payload")
    return retried


def change_queue(model_admin: admin.ModelAdmin, request: HttpRequest, name: str, change: str) -> None:
    """Pause or resume a queue, logged to the queue's admin history."""
    by = f"admin:{request.user.get_username()}"
    if change == "pause":
        state = services.queue_pause(queue=name, by=by)
        text = f"Queue {name} paused: nothing of it runs until it is resumed."
    else:
        state, published = services.queue_resume(queue=name, by=by)
        text = f"Queue {name} resumed; {published} queued job(s) published."
    if state.pk is not None:
        queue_admin = model_admin.admin_site.get_model_admin(QueueState)
        queue_admin.log_change(request, state, f"{change.capitalize()}d from the admin")
    model_admin.message_user(request, text, messages.SUCCESS)


def delete_jobs(model_admin: admin.ModelAdmin, request: HttpRequest, jobs: Iterable[Job]) -> int:
    """Delete through the service (it refuses running jobs); returns how many were deleted."""
    deleted, refused = 0, []
    for job in jobs:
        try:
            services.job_delete(job_id=job.pk)
            deleted += 1
        except JobQueueError as exc:
            refused.append(str(exc))
    if refused:
        model_admin.message_user(request, f"Not deleted: {refused[0]}", messages.WARNING)
    return deleted


def actor_can_operate(request: HttpRequest, model: Any = Job) -> bool:
    return request.user.has_perm(f"jobs.change_{model._meta.model_name}")
