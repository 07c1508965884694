"""The project's settings with Django's task tests installed as an app, for the runner and its worker."""

from jobqueue_site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_task_tests"]  # noqa: F405
TASKS = {"default": {"BACKEND": "jobs.tasks_backend.JobQueueBackend"}}
