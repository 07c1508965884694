"""Celery signal receivers that bring a job to its next status after an attempt."""

import json
import logging
import traceback as tb
from typing import Any

from celery import signals

from jobs import selectors, services
from jobs.dispatch import RUN_JOB_TASK
from jobs.exceptions import PermanentError, UnknownJobType

from .runner import running

log = logging.getLogger("jobqueue.worker")

PERMANENT_ERRORS = (PermanentError, UnknownJobType)


@signals.task_success.connect
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) != RUN_JOB_TASK or not isinstance(result, dict) or not result["claimed"]:
        return
    running.pop(sender.request.id, None)
    job_id, attempt, value = result["job_id"], result["attempt"], result["result"]
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        services.job_fail(
            job_id=job_id,
            attempt=attempt,
            error_type="InvalidResult",
            message=f"the handler returned a value that is not JSON: {exc}",
        )
        return
    services.job_succeed(job_id=job_id, attempt=attempt, result=value)


@signals.task_failure.connect
def on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    traceback: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    if getattr(sender, "name", None) != RUN_JOB_TASK:
        return
    claimed = running.pop(task_id, None) if task_id else None
    if claimed is None:
        # Failed before the handler ran (e.g. database down during the claim), or the
        # report comes from the parent process after a hard time limit: find the attempt.
        job_id = args[0] if args else None
        attempt = selectors.running_attempt(job_id=job_id) if job_id else None
        if attempt is None:
            return
        claimed = (job_id, attempt)
    job_id, attempt = claimed
    trace = einfo.traceback if einfo is not None else "".join(tb.format_tb(traceback))
    services.job_fail(
        job_id=job_id,
        attempt=attempt,
        error_type=type(exception).__name__,
        message=str(exception),
        traceback=trace or "",
        permanent=isinstance(exception, PERMANENT_ERRORS),
    )
