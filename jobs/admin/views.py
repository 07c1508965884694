"""The admin's own pages: the overview (and its live fragments), edit-and-retry, and the one-job
and queue buttons."""

import json
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from jobs.models import QueueState
from jobs.rules.exceptions import JobNotFound, JobQueueError
from jobs.rules.states import Status
from jobs.services import limit_selectors, selectors

from . import actions, display
from .chart import line_chart, throughput_chart
from .fields import json_text

# The overview's sections, each a template of its own that the page polls for (admin/jobs/overview/).
SECTIONS = (
    "dead_letter",
    "tiles",
    "queues",
    "limits",
    "workers",
    "running",
    "scheduled",
    "types",
    "throughput",
    "queue_charts",
)
# A queue whose oldest job waited longer than this (seconds) shows its latency as a warning.
LATE_SECONDS = 60
CHART_MINUTES = 60


def job_urls(object_id: str) -> dict[str, str]:
    return {
        "edit_retry": reverse("admin:jobs_job_edit_retry", args=[object_id]),
        **{name: reverse("admin:jobs_job_operate", args=[object_id, name]) for name in actions.OPERATIONS},
    }


def _job_page(object_id) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[object_id]))


def _status_tiles() -> list[dict]:
    url = reverse("admin:jobs_job_changelist") + "?status__exact="
    return [
        {"status": status, "count": count, "colour": display.STATUS_COLOURS[status], "url": url + status}
        for status, count in selectors.status_counts().items()
    ]


def _queue_charts(now) -> dict:
    """Jobs waiting and latency per queue over the last hour, from the mover's samples; a paused
    queue's latency is left out (it grows while paused, which is no alarm)."""
    history = selectors.queue_history(minutes=CHART_MINUTES, now=now)
    window = {"start": now - timedelta(minutes=CHART_MINUTES), "end": now}
    waiting = {queue: [(s.at, s.queued) for s in samples] for queue, samples in history.items()}
    latency = {
        queue: [(s.at, None if s.paused else s.latency_seconds) for s in samples] for queue, samples in history.items()
    }
    return {"depth": line_chart(waiting, **window), "latency": line_chart(latency, **window)}


def _sections(request: HttpRequest) -> dict:
    """What the overview's sections show, read afresh for the page and for each refresh."""
    now = timezone.now()
    return {
        "now": now,
        "tiles": _status_tiles(),
        "queues": selectors.queue_overview(),
        "limits": limit_selectors.limits_overview(now=now),
        "late_seconds": LATE_SECONDS,
        "workers": selectors.workers_online(),
        "dead_letter": selectors.dead_letter_length(),
        "running": selectors.running_jobs(now=now),
        "scheduled": selectors.scheduled_jobs(now=now),
        "scheduled_total": selectors.scheduled_count(),
        "types": selectors.type_stats(minutes=CHART_MINUTES, now=now),
        "chart": throughput_chart(selectors.throughput_per_minute(minutes=CHART_MINUTES, now=now)),
        "queue_charts": _queue_charts(now),
        "can_change_queues": actions.actor_can_operate(request, QueueState),
        "can_operate": actions.actor_can_operate(request),
        "cancel_grace": settings.JOB_CANCEL_GRACE,
    }


def overview(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Counts per status and queue, queue depth and latency, workers online, running and scheduled
    jobs, the last hour per type and in charts; the page refreshes its sections from `overview_live`."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Overview",
        "opts": model_admin.model._meta,
        "sections": SECTIONS,
        "refresh_url": reverse("admin:jobs_job_overview_live"),
        "refresh_seconds": settings.JOB_ADMIN_REFRESH_SECONDS,
        "flower_url": settings.FLOWER_URL,
        "grafana_url": settings.GRAFANA_URL,
        **_sections(request),
    }
    return render(request, "admin/jobs/overview.html", context)


def overview_live(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The overview's sections as HTML fragments in JSON, for the page's refresh; the overview's
    permission. Never cached (the admin's views are not)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = _sections(request)
    fragments = {
        name: render_to_string(f"admin/jobs/overview/{name}.html", context, request=request) for name in SECTIONS
    }
    return JsonResponse({"updated": context["now"].strftime("%H:%M:%S"), "fragments": fragments})


def queue_change(model_admin: admin.ModelAdmin, request: HttpRequest, name: str, change: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if change not in {"pause", "resume"} or not actions.actor_can_operate(request, QueueState):
        raise PermissionDenied
    try:
        actions.change_queue(model_admin, request, name, change)
    except JobQueueError as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
    return HttpResponseRedirect(reverse("admin:jobs_job_overview"))


def operate_one(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if operation not in actions.OPERATIONS or not actions.actor_can_operate(request):
        raise PermissionDenied
    job = _job_or_404(object_id)
    produced = actions.operate(model_admin, request, [job], operation)
    if request.POST.get("next") == "overview":  # the overview's buttons come back to it
        return HttpResponseRedirect(reverse("admin:jobs_job_overview"))
    return _job_page(produced[0].pk if produced else job.pk)  # a resubmission opens the new job


class PayloadForm(forms.Form):
    payload = forms.CharField(widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "class": "jq-json"}))

    def clean_payload(self) -> dict:
        value = json_text(self.cleaned_data["payload"])
        if not isinstance(value, dict):
            raise forms.ValidationError("The payload must be a JSON object.")
        return value


def edit_retry(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Correct a dead job's payload and run it again under the same id."""
    if not actions.actor_can_operate(request):
        raise PermissionDenied
    job = _job_or_404(object_id)
    if job.status != Status.DEAD:
        model_admin.message_user(
            request, f"Job {job.pk} is {job.status}; only dead jobs can be retried.", messages.WARNING
        )
        return _job_page(job.pk)
    form = PayloadForm(request.POST or None, initial={"payload": json.dumps(job.payload, indent=2, sort_keys=True)})
    if request.method == "POST" and form.is_valid():
        try:
            actions.retry_with_payload(model_admin, request, job, form.cleaned_data["payload"])
        except JobQueueError as exc:
            form.add_error("payload", _describe(exc))
        else:
            model_admin.message_user(request, "Retried with the edited payload.", messages.SUCCESS)
            return _job_page(job.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Edit payload and retry",
        "subtitle": f"{job.type} {job.pk}",
        "opts": model_admin.model._meta,
        "original": job,
        "form": form,
    }
    return render(request, "admin/jobs/edit_retry.html", context)


def _describe(exc: JobQueueError) -> str:
    """The error in one sentence, naming each bad payload field."""
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        fields = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in details.items())
        return f"{exc} ({fields})"
    return str(exc)


def _job_or_404(object_id: str):
    try:
        return selectors.job_by_id(job_id=object_id)
    except JobNotFound as exc:
        raise Http404(str(exc)) from None
