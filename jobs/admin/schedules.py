"""Recurring jobs in the admin: schedules with their next and last run, pause, resume and run now,
the runs of a schedule with links to their jobs. Every change goes through the schedule services;
code-defined schedules are read-only here but may be paused and resumed."""

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from jobs import services
from jobs.api.serializers import LARGEST_SECONDS
from jobs.models import Schedule, ScheduleRun, ScheduleSource
from jobs.rules import registry
from jobs.rules.exceptions import JobQueueError
from jobs.services import selectors

from . import display
from .actions import CheckedSelection
from .fields import PayloadField
from .jobs import ReadOnly
from .views import _describe

OUTCOME_COLOURS = {"fired": "#198754", "missed": "#d39e00", "skipped_overlap": "#6c757d"}
RECENT_RUNS = 50
EDITABLE = [
    "name",
    "job_type",
    "payload",
    "priority",
    "max_retries",
    "cron",
    "interval_seconds",
    "timezone",
    "enabled",
    "missed",
    "catch_up_seconds",
    "overlap",
]
# name -> (service call, what the message and the history say)
OPERATIONS = {
    "pause": (lambda schedule: services.schedule_pause(schedule=schedule), "paused"),
    "resume": (lambda schedule: services.schedule_resume(schedule=schedule), "resumed"),
    "run_now": (lambda schedule: services.schedule_trigger(schedule=schedule), "run now"),
}


def _job_link(job_id, status: str | None) -> str:
    if job_id is None:
        return "-"
    url = reverse("admin:jobs_job_change", args=[job_id])
    return format_html('<a href="{}">{}</a> {}', url, str(job_id)[:8], display.badge(status) if status else "")


class ScheduleForm(forms.ModelForm):
    """Saved by the services while it validates, so that their errors land on the field they name.
    `actor` (set per request by ScheduleAdmin.get_form) is the user the services check it for."""

    actor: Any = None

    job_type = forms.ChoiceField()
    payload = PayloadField(required=False)
    interval_seconds = forms.IntegerField(required=False, min_value=1, max_value=LARGEST_SECONDS)
    catch_up_seconds = forms.IntegerField(required=False, min_value=1, max_value=LARGEST_SECONDS)

    class Meta:
        model = Schedule
        fields = EDITABLE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "job_type" in self.fields:
            self.fields["job_type"].choices = [(name, name) for name in registry.names()]

    def _post_clean(self) -> None:
        if self.errors:
            return
        try:
            if self.instance.pk is None:
                self.instance = services.schedule_create(**self.cleaned_data, actor=self.actor)
            else:
                changes = {name: self.cleaned_data[name] for name in self.changed_data if name in self.cleaned_data}
                self.instance = services.schedule_update(schedule=self.instance, actor=self.actor, **changes)
        except JobQueueError as exc:
            field = "job_type" if exc.field == "type" else exc.field
            self.add_error(field if field in self.fields else None, _describe(exc))


@admin.register(Schedule)
class ScheduleAdmin(CheckedSelection, admin.ModelAdmin):
    form = ScheduleForm
    change_form_template = "admin/jobs/schedule_change_form.html"
    list_display = ["name", "job_type", "every", "next_run", "last_run", "last_outcome", "enabled", "source"]
    list_filter = ["enabled", "source", "job_type"]
    search_fields = ["name", "job_type"]
    list_per_page = 50
    actions = ["pause", "resume", "run_now"]
    fieldsets = [
        ("Schedule", {"fields": ["name", "job_type", "payload", "priority", "max_retries"]}),
        ("When", {"fields": ["cron", "interval_seconds", "timezone", "enabled"]}),
        ("Policies", {"fields": ["missed", "catch_up_seconds", "overlap"]}),
    ]
    state_fieldsets = [
        ("State", {"fields": ["source", "next_tick_at", "last_tick_at", "last_run", "created_at", "updated_at"]}),
        ("Runs", {"fields": ["runs"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.schedules_overview(super().get_queryset(request))

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)  # a class made for this request
        form.actor = request.user
        return form

    def get_fieldsets(self, request: HttpRequest, obj=None):
        return self.fieldsets if obj is None else self.fieldsets + self.state_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return []
        state = [name for _, options in self.state_fieldsets for name in options["fields"]]
        return ["name", *state]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or obj.source != ScheduleSource.CODE)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.source != ScheduleSource.CODE)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_schedule")

    def save_model(self, request: HttpRequest, obj: Schedule, form, change: bool) -> None:
        """The form's services have saved it."""

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule=obj)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet):
        return super().log_deletions(request, queryset.exclude(source=ScheduleSource.CODE))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for schedule in queryset:
            try:
                services.schedule_delete(schedule=schedule)
            except JobQueueError as exc:
                self.message_user(request, f"Not deleted: {exc}", messages.WARNING)

    def get_urls(self):
        operate = self.admin_site.admin_view(partial(schedule_operate, self))
        custom = [path("<str:object_id>/operate/<str:operation>/", operate, name="jobs_schedule_operate")]
        return custom + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        urls = {name: reverse("admin:jobs_schedule_operate", args=[object_id, name]) for name in OPERATIONS}
        can_operate = self.has_operate_permission(request)
        extra = {"schedule_urls": urls, "can_operate": can_operate, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def operate(self, request: HttpRequest, schedules, name: str) -> None:
        call, verb = OPERATIONS[name]
        done, refused = [], []
        for schedule in schedules:
            try:
                result = call(schedule)
            except JobQueueError as exc:
                refused.append(f"{schedule.name}: {exc}")
                continue
            done.append(schedule.name)
            note = f"{verb.capitalize()} from the admin" + (f" as job {result.pk}" if name == "run_now" else "")
            self.log_change(request, schedule, note)
        if done:
            self.message_user(request, f"{verb.capitalize()}: {', '.join(done)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not {verb}: {'; '.join(refused)}", messages.WARNING)

    @admin.action(description="Pause selected schedules", permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.operate(request, queryset, "pause")

    @admin.action(description="Resume selected schedules (from now on)", permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.operate(request, queryset, "resume")

    @admin.action(description="Run selected schedules now", permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.operate(request, queryset, "run_now")

    @admin.display(description="every")
    def every(self, schedule: Schedule) -> str:
        return f"{schedule.cron or f'{schedule.interval_seconds}s'} ({schedule.timezone})"

    @admin.display(description="next run", ordering="next_tick_at")
    def next_run(self, schedule: Schedule) -> str:
        return display.due(schedule.next_tick_at) if schedule.enabled else "paused"

    @admin.display(description="last run", ordering="last_run_tick_at")
    def last_run(self, schedule: Schedule) -> str:
        return display.age(schedule.last_run_tick_at)

    @admin.display(description="outcome")
    def last_outcome(self, schedule: Schedule) -> str:
        if not schedule.last_run_outcome:
            return "-"
        outcome = display.badge(schedule.last_run_outcome, OUTCOME_COLOURS)
        return format_html("{} {}", outcome, _job_link(schedule.last_run_job_id, schedule.last_run_job_status))

    @admin.display(description="runs")
    def runs(self, schedule: Schedule) -> str:
        """The latest runs with links to their jobs, and a link to all of them."""
        recent = list(selectors.schedule_runs(schedule=schedule, limit=RECENT_RUNS))
        if not recent:
            return "No runs yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    display.age(run.tick_at),
                    display.badge(run.outcome, OUTCOME_COLOURS),
                    _job_link(run.job_id, run.job.status if run.job else None),
                    "-" if run.lateness_seconds is None else f"{run.lateness_seconds:.2f}s",
                )
                for run in recent
            ),
        )
        everything = reverse("admin:jobs_schedulerun_changelist") + f"?schedule__id__exact={schedule.pk}"
        return format_html(
            '<table class="jq-runs"><thead><tr><th>tick</th><th>outcome</th><th>job</th><th>late</th></tr></thead>'
            '<tbody>{}</tbody></table><p><a href="{}">All runs of {}</a></p>',
            rows,
            everything,
            schedule.name,
        )


def schedule_operate(model_admin: ScheduleAdmin, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
    """The buttons of a schedule's page: pause, resume, run now."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if operation not in OPERATIONS or not model_admin.has_operate_permission(request):
        raise PermissionDenied
    schedule = model_admin.get_object(request, object_id)
    if schedule is None:
        raise Http404(f"no schedule with id {object_id}")
    model_admin.operate(request, [schedule], operation)
    return HttpResponseRedirect(reverse("admin:jobs_schedule_change", args=[schedule.pk]))


@admin.register(ScheduleRun)
class ScheduleRunAdmin(CheckedSelection, ReadOnly, admin.ModelAdmin):
    """Every tick of every schedule: fired (with its job), missed or skipped."""

    list_display = ["tick_at", "schedule", "outcome_badge", "job_link", "recorded_at", "late"]
    list_filter = ["outcome", "schedule"]
    list_select_related = ["schedule", "job"]
    date_hierarchy = "tick_at"
    list_per_page = 100

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, run: ScheduleRun) -> str:
        return display.badge(run.outcome, OUTCOME_COLOURS)

    @admin.display(description="job")
    def job_link(self, run: ScheduleRun) -> str:
        return _job_link(run.job_id, run.job.status if run.job else None)

    @admin.display(description="late")
    def late(self, run: ScheduleRun) -> str:
        return "-" if run.lateness_seconds is None else f"{run.lateness_seconds:.2f}s"
