from django.contrib import admin

from .models import Job, JobAttempt


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "started_at", "finished_at", "worker", "outcome", "error_type", "error_message"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "status", "priority", "attempts", "progress", "created_at", "owner"]
    list_filter = ["status", "priority", "type"]
    search_fields = ["id", "type", "error_message"]
    inlines = [JobAttemptInline]
    readonly_fields = [field.name for field in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
