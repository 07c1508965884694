"""Django's task API as a front door: `TASKS = {"default": {"BACKEND": "jobs.tasks_backend.JobQueueBackend"}}`.

`@task` functions enqueued through this backend become jobs of one type, `django_task`, submitted
by `job_submit` like any other job (validated, stored, published after the commit); the worker's
handler (tasks/django_task.py) imports the task by its path and calls it. A job's row is the task's
result: `get_result` reads it back as the API's own TaskResult.

- Priority: the API's whole number from -100 to 100 picks the queue: above 0 `high`, 0 `medium`,
  below 0 `low`.
- `queue_name`: `default` (the API's default) follows the priority; `high`, `medium` or `low`
  names the queue itself, whatever the priority. The backend's QUEUES may list only these.
- `run_after` is the job's `run_at`: the job waits in the database and the mover queues it.
- The payload keeps the task's path, arguments, priority, queue name and run_after, so that
  `get_result(id).task` is the task as it was enqueued.
"""

import builtins
import json
import logging
import sys
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from jobs.adapters import internals
from jobs.adapters.task_api import (
    DEFAULT_TASK_QUEUE_NAME,
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from jobs.models import Job
from jobs.rules.exceptions import InvalidPayload, InvalidSubmission, JobNotFound
from jobs.rules.states import QUEUES, Priority, Status
from jobs.services import job_submit, selectors

log = logging.getLogger("jobqueue.tasks")

TASK_JOB_TYPE = "django_task"
PAYLOAD_FIELDS = frozenset({"task", "args", "kwargs", "takes_context", "priority", "queue_name", "run_after"})
PRIORITY_RANGE = range(-100, 101)  # the API's TASK_MIN_PRIORITY to TASK_MAX_PRIORITY

# Each job status as the API's status. A job waiting to run again (retrying, after a failed
# attempt) is READY, its failures so far in `errors`; a cancelled job never ran to the end: FAILED.
RESULT_STATUS: dict[str, TaskResultStatus] = {
    **dict.fromkeys((Status.SCHEDULED, Status.QUEUED, Status.WAITING, Status.RETRYING), TaskResultStatus.READY),
    **dict.fromkeys((Status.DEAD, Status.CANCELLED), TaskResultStatus.FAILED),
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
}


def queue_for(priority: int) -> str:
    """The queue of the API's priority (-100 to 100)."""
    return (Priority.HIGH if priority > 0 else Priority.LOW if priority < 0 else Priority.MEDIUM).value


def as_json(value: Any) -> Any:
    """`value` as the API normalises it (tuples to lists...), refused when JSON cannot carry it as it
    is: the API's own TypeError or ValueError for a type it does not take, and the same errors for
    a float JSON has no number for (nan, inf) and an object key that is not a string."""
    normalized = normalize_json(value)
    if json.loads(json.dumps(normalized, allow_nan=False)) != normalized:
        raise TypeError("Unsupported object key: JSON object keys are strings")
    return normalized


def _project_packages() -> set[str]:
    """The packages tasks may be imported from: the installed apps', and those of JOB_HANDLER_MODULES
    (`billing.jobs` lets `billing.tasks` in)."""
    modules = settings.JOB_HANDLER_MODULES
    parents = {module.rpartition(".")[0] for module in modules} - {""}
    return {app.name for app in apps.get_app_configs()} | set(modules) | parents


def task_at(path: Any, *, load: bool = False) -> Task:
    """The task declared with `@task` at `path`; ValueError for anything else, or a path outside the
    project's packages. Only a loaded module is looked in: a submitted payload never makes this
    process import a module (one with side effects, such as registering job types). `load` imports
    the module of a stored job's task (the worker that runs it, get_result), which code chose. The
    error never carries an exception's text: that goes to the log."""
    if not isinstance(path, str) or not path:
        raise ValueError("task must be the dotted path of a function declared with @task")
    if not any(path.startswith(package + ".") for package in _project_packages()):
        raise ValueError(f"task {path!r} is not in an installed app or a package of JOB_HANDLER_MODULES")
    module_path, _, name = path.rpartition(".")
    if not load and module_path not in sys.modules:
        raise ValueError(f"task {path!r} is not a task of this project: its module is not loaded")
    try:
        found = import_string(path) if load else getattr(sys.modules[module_path], name)
    except Exception:  # ImportError, AttributeError, or whatever a broken module raises as it is imported
        log.warning("task %r cannot be found", path, exc_info=True)
        raise ValueError(f"task {path!r} cannot be found") from None
    if not isinstance(found, Task):
        raise ValueError(f"{path!r} is not a task: declare it with @task")
    return found


def clean_payload(payload: dict) -> dict:
    """The payload validator of the `django_task` type: the task exists, the arguments are JSON."""
    if unknown := sorted(set(payload) - PAYLOAD_FIELDS):
        raise ValueError(
            f"unknown fields {', '.join(unknown)}; a task's payload has {', '.join(sorted(PAYLOAD_FIELDS))}"
        )
    task = task_at(payload.get("task"))
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args must be a list and kwargs an object")
    if payload.get("takes_context", task.takes_context) is not task.takes_context:
        raise ValueError(f"takes_context must be {task.takes_context} for task {payload['task']!r}")
    return {
        "task": payload["task"],
        "args": args,
        "kwargs": kwargs,
        "takes_context": task.takes_context,
        **_options(payload),
    }


def _options(payload: dict) -> dict:
    """The priority, queue name and run_after the task was enqueued with, those given checked."""
    options = {key: payload[key] for key in ("priority", "queue_name", "run_after") if key in payload}
    priority = options.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITY_RANGE:
        raise ValueError("priority must be a whole number from -100 to 100")
    if options.get("queue_name", DEFAULT_TASK_QUEUE_NAME) not in {DEFAULT_TASK_QUEUE_NAME, *QUEUES}:
        raise ValueError(f"queue_name must be one of {', '.join(sorted({DEFAULT_TASK_QUEUE_NAME, *QUEUES}))}")
    if options.get("run_after") is not None:
        _run_after(options["run_after"])
    return options


def _run_after(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError("run_after must be an ISO 8601 date and time with its offset, or null") from None
    if when.tzinfo is None:
        raise ValueError("run_after must be an ISO 8601 date and time with its offset, or null")
    return when


def _as_enqueued(task: Task, payload: dict, *, backend: str) -> Task:
    """The task with the options it was enqueued with (kept in the payload); as declared if they no
    longer fit the backend (a queue taken out of QUEUES since)."""
    run_after = payload.get("run_after")
    try:
        return task.using(
            priority=payload.get("priority", task.priority),
            queue_name=payload.get("queue_name", task.queue_name),
            run_after=_run_after(run_after) if run_after is not None else None,
            backend=backend,
        )
    except InvalidTaskError:
        return task


def exception_path(error_type: str, traceback: str) -> str:
    """The dotted path of a failed attempt's exception class. The attempt keeps the class's name and
    the formatted traceback, whose last block names the class in full (`billing.tasks.Declined:
    ...`; a built-in one bare, `ValueError: ...`)."""
    last = traceback.rsplit("Traceback (most recent call last):\n", 1)[-1]
    for line in last.splitlines():
        named = line.split(":", 1)[0]
        if not line[:1].isspace() and (named == error_type or named.endswith("." + error_type)):
            return named if "." in named else f"builtins.{named}"
    return f"builtins.{error_type}" if isinstance(getattr(builtins, error_type, None), type) else error_type


def task_result(job: Job, *, backend: str, task: Task | None = None, attempts: list | None = None) -> TaskResult:
    """The API's TaskResult of a `django_task` job: its `attempts`, or else its history (prefetched)."""
    attempts = list(job.history.all()) if attempts is None else attempts
    failed = [attempt for attempt in attempts if attempt.outcome in selectors.FAILED_OUTCOMES]
    result = TaskResult(
        task=task or _as_enqueued(task_at(job.payload["task"], load=True), job.payload, backend=backend),
        id=str(job.pk),
        status=RESULT_STATUS[job.status],
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at or (job.updated_at if job.status == Status.CANCELLED else None),
        last_attempted_at=attempts[-1].started_at if attempts else None,
        args=job.payload["args"],
        kwargs=job.payload["kwargs"],
        backend=backend,
        errors=[
            TaskError(
                exception_class_path=exception_path(attempt.error_type, attempt.traceback),
                traceback=attempt.traceback or attempt.error_message,
            )
            for attempt in failed
        ],
        worker_ids=[attempt.worker for attempt in attempts],
    )
    if job.status == Status.SUCCEEDED:
        internals.set_return_value(result, job.result)
    return result


class JobQueueBackend(BaseTaskBackend):
    """Tasks as jobqueue jobs: durable, run by the Celery workers, on the queue of their priority."""

    supports_defer = True
    supports_async_task = True  # the handler runs a coroutine function to its end (Task.call)
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        allowed = {DEFAULT_TASK_QUEUE_NAME, *QUEUES}
        if "QUEUES" not in params:
            self.queues = allowed
        if not self.queues or self.queues - allowed:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['QUEUES'] may name {', '.join(sorted(allowed))}; got {sorted(self.queues)}"
            )

    def queue_of(self, task: Task) -> str:
        """`default` follows the priority; any other queue name (validated) is the queue itself."""
        return queue_for(task.priority) if task.queue_name == DEFAULT_TASK_QUEUE_NAME else task.queue_name

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Submit the task as a job (after the commit of a surrounding transaction, it is published)."""
        self.validate_task(task)  # as it is now: its queue may have left QUEUES since the task was made
        args, kwargs = as_json([args, kwargs])
        payload = {
            "task": task.module_path,
            "args": args,
            "kwargs": kwargs,
            "takes_context": task.takes_context,
            "priority": task.priority,
            "queue_name": task.queue_name,
            "run_after": task.run_after.isoformat() if task.run_after else None,
        }
        try:
            job, _ = job_submit(
                type=TASK_JOB_TYPE, payload=payload, priority=self.queue_of(task), run_at=task.run_after
            )
        except (InvalidPayload, InvalidSubmission) as exc:
            raise InvalidTaskError(exc.message) from exc
        result = task_result(job, backend=self.alias, task=task, attempts=[])  # a new job: no attempt yet
        task_enqueued.send_robust(type(self), task_result=result)  # a failing listener does not undo the job
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as its job stands now; TaskResultDoesNotExist for an id of no task's job."""
        try:
            job = selectors.job_by_id(job_id=result_id, among=Job.objects.filter(type=TASK_JOB_TYPE))
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        try:
            return task_result(job, backend=self.alias)
        except ValueError as exc:  # its task is gone from the code
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
