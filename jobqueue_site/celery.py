"""The Celery app: `celery -A jobqueue_site worker -Q high,medium,low`."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")

QUEUES = ("high", "medium", "low")
DEAD_LETTER_QUEUE = "dead_letter"

app = Celery("jobqueue_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in (*QUEUES, DEAD_LETTER_QUEUE)]
app.conf.imports = ("tasks.runner",)
