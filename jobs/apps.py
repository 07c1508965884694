from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Job queue"  # the breadcrumbs read "Home > Job queue > Jobs"
    default_auto_field = "django.db.models.BigAutoField"
