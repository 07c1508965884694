"""The `django_task` job type: runs a function declared with Django's `@task`, enqueued through
jobs.tasks_backend.JobQueueBackend.

The payload names the task by its dotted path; only a Task object found there is run, never any
other callable. A coroutine function runs to its end in the worker (Task.call). The return value
becomes the job's result as the API normalises it; a value JSON cannot carry fails the attempt. The
API's task_started and task_finished signals are sent when something listens to them; a listener
that fails is logged, and changes nothing for the task."""

import dataclasses
import traceback
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs import tasks_backend
from jobs.adapters import internals
from jobs.adapters.task_api import TaskContext, TaskError, TaskResult, TaskResultStatus, task_finished, task_started
from jobs.rules.exceptions import PermanentError
from jobs.rules.registry import job_type
from jobs.services import selectors

from .context import JobContext

SENDER = tasks_backend.JobQueueBackend


@job_type(
    tasks_backend.TASK_JOB_TYPE,
    max_retries=settings.JOB_TASKS_MAX_RETRIES,
    validator=tasks_backend.clean_payload,
    internal=True,  # it runs any task of the deployment with the arguments given: code submits it
)
def run_task(payload: dict, ctx: JobContext) -> Any:
    try:
        task = tasks_backend.task_at(payload["task"], load=True)  # a stored job's task, which code chose
    except ValueError as exc:  # gone from the code since it was enqueued: another attempt finds it gone too
        raise PermanentError(str(exc)) from exc
    watched = task_started.has_listeners() or task_finished.has_listeners()
    running = _running_result(ctx, task) if task.takes_context or watched else None
    if watched:
        task_started.send_robust(SENDER, task_result=running)
    try:
        context = (TaskContext(task_result=running),) if task.takes_context else ()
        value = tasks_backend.as_json(task.call(*context, *payload["args"], **payload["kwargs"]))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too, as Django's own backends
        if watched:
            task_finished.send_robust(SENDER, task_result=_finished(running, error=exc))
        raise
    if watched:
        task_finished.send_robust(SENDER, task_result=_finished(running, value=value))
    return value


def _running_result(ctx: JobContext, task: Any) -> TaskResult:
    """The task's result as it runs: this attempt is the last of its `worker_ids`."""
    return tasks_backend.task_result(selectors.job_by_id(job_id=ctx.job_id), backend=task.backend)


def _finished(running: TaskResult, *, value: Any = None, error: BaseException | None = None) -> TaskResult:
    """This attempt's end, for task_finished: SUCCESSFUL with its value, or FAILED with its error."""
    changes: dict[str, Any] = {"finished_at": timezone.now(), "status": TaskResultStatus.SUCCESSFUL}
    if error is not None:
        path = f"{type(error).__module__}.{type(error).__qualname__}"
        failure = TaskError(exception_class_path=path, traceback="".join(traceback.format_exception(error)))
        changes.update(status=TaskResultStatus.FAILED, errors=[*running.errors, failure])
    finished = dataclasses.replace(running, **changes)
    if error is None:
        internals.set_return_value(finished, value)
    return finished
