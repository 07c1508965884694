"""The Celery app: `celery -A jobqueue_site worker -Q high,medium,low`."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")

from jobs.adapters import internals
from jobs.rules.states import DEAD_LETTER_QUEUE, QUEUES

__all__ = ["DEAD_LETTER_QUEUE", "QUEUES", "app"]

# Redis URLs name our transport (jobs/adapters/transport.py) under kombu's own scheme, so the broker
# URL stays `redis://...`: Flower picks its Broker tab's client by that scheme.
internals.register_kombu_transport("jobs.adapters.transport:Transport", "redis", "rediss")

app = Celery("jobqueue_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in (*QUEUES, DEAD_LETTER_QUEUE)]
app.conf.imports = ("tasks.runner",)
# The worker's event-loop liveness step (tasks/node.py), by name: loaded when a worker starts.
app.steps["consumer"].add("tasks.node:LoopTick")
