"""Run-time overrides of the job types' cluster-wide limits, edited through the services."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from jobs import services
from jobs.models import JobLimit
from jobs.rules import registry
from jobs.rules.exceptions import JobQueueError
from jobs.rules.limits import LimitProblem, make_limit
from jobs.services import limit_selectors

from .actions import CheckedSelection


class JobLimitForm(forms.ModelForm):
    type = forms.ChoiceField(choices=())

    class Meta:
        model = JobLimit
        fields = ["type", "concurrency", "rate", "limit_key"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = [(name, name) for name in registry.names()]
        if self.instance.pk:
            self.fields["type"].disabled = True

    def clean(self) -> dict:
        data = super().clean()
        try:
            make_limit(
                concurrency=data.get("concurrency"), rate=data.get("rate") or None, limit_key=data.get("limit_key")
            )
        except LimitProblem as exc:
            self.add_error(exc.field, str(exc))
        return data


@admin.register(JobLimit)
class JobLimitAdmin(CheckedSelection, admin.ModelAdmin):
    """An override replaces all the limits a type declares in code; deleting it brings them back."""

    form = JobLimitForm
    list_display = ["type", "effective", "code_limits", "usage", "changed_at", "changed_by"]
    readonly_fields = ["changed_at", "changed_by"]

    @admin.display(description="in force")
    def effective(self, override: JobLimit) -> str:
        return limit_selectors.effective_limit(override.type).describe()

    @admin.display(description="declared in code")
    def code_limits(self, override: JobLimit) -> str:
        return limit_selectors.code_limit(override.type).describe()

    @admin.display(description="running / starts in window / waiting")
    def usage(self, override: JobLimit) -> str:
        try:
            detail = limit_selectors.limit_detail(job_type=override.type, stored=override)
        except JobQueueError:
            return "unknown type"
        return f"{detail['running']} / {detail['starts_in_window']} / {detail['waiting']}"

    def save_model(self, request: HttpRequest, obj: JobLimit, form, change: bool) -> None:
        saved = services.limit_set(
            type=obj.type,
            concurrency=obj.concurrency,
            rate=obj.rate or None,
            limit_key=obj.limit_key or None,
            by=f"admin:{request.user.get_username()}",
        )
        obj.pk, obj.changed_at, obj.changed_by = saved.pk, saved.changed_at, saved.changed_by
        obj.rate, obj.limit_key = saved.rate, saved.limit_key

    def delete_model(self, request: HttpRequest, obj: JobLimit) -> None:
        services.limit_clear(type=obj.type, by=f"admin:{request.user.get_username()}")

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for override in list(queryset):
            self.delete_model(request, override)
        messages.info(request, "The limits declared in code apply again.")
