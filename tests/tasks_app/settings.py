"""The settings of a Django project that uses jobqueue as its task backend: jobqueue's own, this app
installed, and TASKS as such a project writes it. The e2e workers of tests/e2e/test_django_tasks.py
run with DJANGO_SETTINGS_MODULE=tests.tasks_app.settings."""

from jobqueue_site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tasks_app"]  # noqa: F405
TASKS = {"default": {"BACKEND": "jobs.tasks_backend.JobQueueBackend"}}
