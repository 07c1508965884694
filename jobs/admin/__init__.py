"""The admin is the operators' dashboard: jobs, the dead-letter queue, queues and an overview."""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin  # registers users and groups now, to check their actions
from django.contrib.auth.models import Group, User
from django.urls import reverse_lazy

from jobs.models import QueueState

from . import actions
from .jobs import DeadJobAdmin, JobAdmin, ReadOnly
from .limits import JobLimitAdmin
from .login import LockoutAuthenticationForm
from .schedules import ScheduleAdmin, ScheduleRunAdmin

admin.site.site_header = "jobqueue"
admin.site.site_title = "jobqueue admin"
admin.site.index_title = "Dashboard"
# "View site": the site's own pages are its API, documented by Swagger UI (there is no page at /).
admin.site.site_url = reverse_lazy("swagger-ui")
# The header carries the operator links; the app sidebar would only squeeze the job tables.
admin.site.enable_nav_sidebar = False
# Too many failed logins from an address lock it out for a while (JOB_LOGIN_MAX_FAILURES).
admin.site.login_form = LockoutAuthenticationForm


@admin.register(QueueState)
class QueueStateAdmin(actions.CheckedSelection, ReadOnly, admin.ModelAdmin):
    """Paused queues and who paused them; pausing itself is on the overview page."""

    list_display = ["name", "paused", "changed_at", "changed_by"]
    readonly_fields = list_display
    actions = ["pause", "resume"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_operate_permission(self, request) -> bool:
        return actions.actor_can_operate(request, QueueState)

    @admin.action(description="Pause selected queues", permissions=["operate"])
    def pause(self, request, queryset) -> None:
        for state in queryset:
            actions.change_queue(self, request, state.name, "pause")

    @admin.action(description="Resume selected queues", permissions=["operate"])
    def resume(self, request, queryset) -> None:
        for state in queryset:
            actions.change_queue(self, request, state.name, "resume")


# Django's own admins of users and groups answer a forged selection with a 400 too.
for _model, _admin in ((User, auth_admin.UserAdmin), (Group, auth_admin.GroupAdmin)):
    admin.site.unregister(_model)
    admin.site.register(_model, type(_admin.__name__, (actions.CheckedSelection, _admin), {}))


__all__ = ["DeadJobAdmin", "JobAdmin", "JobLimitAdmin", "QueueStateAdmin", "ScheduleAdmin", "ScheduleRunAdmin"]
