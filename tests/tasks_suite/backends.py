"""jobqueue's backend in the roles of Django's test backends; the only changes are waiting and reporting.

- `ReadyBackend` for the DummyBackend, whose tasks never run: no worker runs while it is used.
  `results` and `clear()` are the dummy's test helpers, over the jobs of Django's tasks.
- `WorkerBackend` for the ImmediateBackend: it enqueues as jobqueue does, then waits for the real
  worker to finish the task, and logs a failure to `django.tasks` as the immediate backend does in
  the caller's process (with the traceback the worker recorded).
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from jobs.adapters.task_api import TaskResultStatus
from jobs.models import Job
from jobs.tasks_backend import TASK_JOB_TYPE, JobQueueBackend

log = logging.getLogger("django.tasks")
WAIT_SECONDS = 30.0


def _from_any_context(read):
    """`read()` of the database, also from an async test (the dummy's helpers are plain attributes)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return read()

    def in_thread():
        try:
            return read()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(in_thread).result()


class ReadyBackend(JobQueueBackend):
    @property
    def results(self) -> list:
        def read() -> list:
            jobs = Job.objects.filter(type=TASK_JOB_TYPE).order_by("created_at").values_list("pk", flat=True)
            return [self.get_result(str(pk)) for pk in jobs]

        return _from_any_context(read)

    def clear(self) -> None:
        _from_any_context(lambda: Job.objects.filter(type=TASK_JOB_TYPE).delete())


class WorkerBackend(JobQueueBackend):
    def enqueue(self, task, args, kwargs):
        result = super().enqueue(task, args, kwargs)
        deadline = time.monotonic() + WAIT_SECONDS
        while not result.is_finished:
            if time.monotonic() > deadline:
                raise AssertionError(f"task {result.id} did not finish within {WAIT_SECONDS}s: is the worker up?")
            time.sleep(0.02)
            result.refresh()
        if result.status == TaskResultStatus.FAILED:
            log.error(
                "Task id=%s path=%s state=%s\n%s",
                result.id,
                task.module_path,
                result.status,
                result.errors[-1].traceback,
            )
        return result
