"""The job list and job page: coloured status, progress, filters, search, actions through the services."""

import uuid
from functools import partial

from django.conf import settings
from django.contrib import admin
from django.db import DataError, NotSupportedError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseBadRequest
from django.urls import path, reverse
from django.utils.html import format_html

from jobs.models import DeadJob, Job, JobAttempt
from jobs.rules.states import Status
from jobs.services import selectors

from . import actions, display, views


class ReadOnly:
    """Rows shown but never added or edited in a form: changes go through the actions."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class JobAttemptInline(ReadOnly, admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    verbose_name_plural = "attempt history"
    fields = ["number", "outcome_badge", "worker", "started_at", "finished_at", "took", "error", "traceback_details"]
    readonly_fields = fields

    @admin.display(description="outcome")
    def outcome_badge(self, attempt: JobAttempt) -> str:
        return display.badge(attempt.outcome, display.OUTCOME_COLOURS)

    @admin.display(description="took")
    def took(self, attempt: JobAttempt) -> str:
        if not attempt.finished_at:
            return "-"
        return f"{(attempt.finished_at - attempt.started_at).total_seconds():.2f}s"

    @admin.display(description="error")
    def error(self, attempt: JobAttempt) -> str:
        return f"{attempt.error_type}: {attempt.error_message}" if attempt.error_type else "-"

    @admin.display(description="traceback")
    def traceback_details(self, attempt: JobAttempt) -> str:
        if not attempt.traceback:
            return "-"
        return format_html('<details><summary>show</summary><pre class="jq-pre">{}</pre></details>', attempt.traceback)


class JobDisplay(actions.CheckedSelection, ReadOnly, admin.ModelAdmin):
    """What the job list and job page show; shared by the dead-letter view."""

    list_display = [
        "short_id",
        "type",
        "status_badge",
        "priority",
        "attempts_of",
        "progress_bar",
        "age",
        "short_reason",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", "priority", "type", "created_at"]
    search_fields = ["id", "type", "error_message", "payload"]
    search_help_text = "Id, type, error text, reason or payload content."
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    inlines = [JobAttemptInline]
    change_form_template = "admin/jobs/job_change_form.html"
    actions = ["retry_jobs", "run_jobs_now", "resubmit_jobs", "cancel_jobs", "delete_selected"]
    fieldsets = [
        ("Job", {"fields": ["id", "type", "status_badge", "priority", "owner", "idempotency_key", "resubmitted_from"]}),
        ("Progress", {"fields": ["progress_bar", "progress_message", "attempts_of", "worker"]}),
        ("Failure", {"fields": ["reason", "error_type", "error_message_pre", "traceback_pre"]}),
        ("Payload and result", {"fields": ["payload_pretty", "result_pretty"]}),
        ("Times", {"fields": ["created_at", "run_at", "started_at", "finished_at", "updated_at", "lease_expires_at"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]] + ["limit_key"]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        if obj is not None and obj.status == Status.WAITING:
            # Waiting for a slot of its type's limit: the reason says which limit, run_at when a rate frees.
            waiting = ("Waiting for a limit", {"fields": ["reason", "limit_key", "run_at"]})
            return [waiting if name == "Failure" else (name, options) for name, options in self.fieldsets]
        if obj is not None and not (obj.error_type or obj.reason):
            return [
                (name, {**options, "classes": ["collapse"]}) if name == "Failure" else (name, options)
                for name, options in self.fieldsets
            ]
        return self.fieldsets

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.status != Status.RUNNING)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return actions.actor_can_operate(request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        return selectors.jobs_search(queryset, search_term), False

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        actions.delete_jobs(self, request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.delete_jobs(self, request, queryset)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet):
        return super().log_deletions(request, queryset.exclude(status=Status.RUNNING))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        try:
            uuid.UUID(str(object_id))
        except ValueError:
            raise Http404(f"no job with id {object_id}") from None
        extra = {
            "job_urls": views.job_urls(object_id),
            "can_operate": actions.actor_can_operate(request),
            "cancel_grace": settings.JOB_CANCEL_GRACE,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """A filter the database cannot apply (a year past 9999, a lookup the backend lacks) is a
        400 naming it, not a 500. The list is rendered here, where its query runs."""
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()
        except (OverflowError, ValueError, NotSupportedError, DataError) as exc:
            return HttpResponseBadRequest(f"This filter cannot be applied: {exc}", content_type="text/plain")
        return response

    @admin.action(description="Retry selected dead jobs (same id)", permissions=["operate"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.operate(self, request, queryset, "retry")

    @admin.action(description="Run selected scheduled jobs now", permissions=["operate"])
    def run_jobs_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.operate(self, request, queryset, "run_now")

    @admin.action(description="Resubmit selected jobs as new jobs", permissions=["operate"])
    def resubmit_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.operate(self, request, queryset, "resubmit")

    @admin.action(description="Cancel selected jobs (running ones are stopped)", permissions=["operate"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.operate(self, request, queryset, "cancel")

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return str(job.id)[:8]

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        return display.badge(job.status)

    @admin.display(description="attempts")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts} / {job.max_retries + 1}"

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, job: Job) -> str:
        return display.progress_bar(job.progress, job.progress_message)

    @admin.display(description="age", ordering="created_at")
    def age(self, job: Job) -> str:
        return display.age(job.created_at)

    @admin.display(description="reason")
    def short_reason(self, job: Job) -> str:
        return job.reason[:60] or "-"

    @admin.display(description="error message")
    def error_message_pre(self, job: Job) -> str:
        return display.pre(job.error_message)

    @admin.display(description="traceback")
    def traceback_pre(self, job: Job) -> str:
        return display.pre(job.error_traceback)

    @admin.display(description="payload")
    def payload_pretty(self, job: Job) -> str:
        return display.pretty_json(job.payload)

    @admin.display(description="result")
    def result_pretty(self, job: Job) -> str:
        return display.pretty_json(job.result)


@admin.register(Job)
class JobAdmin(JobDisplay):
    def get_urls(self):
        def wrap(view):  # the views take this admin first, then the request
            return self.admin_site.admin_view(partial(view, self))

        custom = [
            path("overview/", wrap(views.overview), name="jobs_job_overview"),
            path("overview/live/", wrap(views.overview_live), name="jobs_job_overview_live"),
            path("queues/<str:name>/<str:change>/", wrap(views.queue_change), name="jobs_job_queue"),
            path("<str:object_id>/operate/<str:operation>/", wrap(views.operate_one), name="jobs_job_operate"),
            path("<str:object_id>/edit-retry/", wrap(views.edit_retry), name="jobs_job_edit_retry"),
        ]
        return custom + super().get_urls()


@admin.register(DeadJob)
class DeadJobAdmin(JobDisplay):
    """The dead-letter queue: dead jobs with their reason, and edit-and-retry."""

    list_display = ["short_id", "type", "short_reason", "error_summary", "attempts_of", "died", "edit_and_retry"]
    list_filter = ["type", "priority", "finished_at"]
    date_hierarchy = "finished_at"
    actions = ["retry_jobs", "resubmit_jobs", "delete_selected"]
    # Most recently dead first, as the API lists them (the changelist orders by this, not by the queryset).
    ordering = ["-finished_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(status=Status.DEAD)

    @admin.display(description="error")
    def error_summary(self, job: Job) -> str:
        return f"{job.error_type}: {job.error_message[:80]}" if job.error_type else "-"

    @admin.display(description="died", ordering="finished_at")
    def died(self, job: Job) -> str:
        return display.age(job.finished_at)

    @admin.display(description="")
    def edit_and_retry(self, job: Job) -> str:
        url = reverse("admin:jobs_job_edit_retry", args=[job.pk])
        return format_html('<a class="button" href="{}">Edit payload and retry</a>', url)
