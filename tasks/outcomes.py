"""What brings a job to its next status after an attempt: its success, handed over by the task,
and the task_failure receiver."""

import json
import logging
import traceback as tb
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import signals
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobs import services
from jobs.adapters import metrics
from jobs.adapters.dispatch import RUN_JOB_TASK
from jobs.rules import retry
from jobs.rules.exceptions import AttemptFenced
from jobs.rules.input_limits import redact, unstorable
from jobs.services import selectors

from . import fence, finisher

log = logging.getLogger("jobqueue.worker")


def _describe(exception: BaseException | None) -> str:
    """str(exception), even when the exception's own __str__ is broken."""
    try:
        return str(exception)
    except Exception as exc:  # a handler's exception type is arbitrary code
        return f"<unprintable {type(exception).__name__}: {type(exc).__name__}>"


def succeeded(claim: services.Claim, value: Any, *, fenced: bool = False) -> None:
    """A handler returned `value`: hand the success to this process's writer, or fail the
    attempt if the value cannot be stored as the job's result. A job holding a slot of its
    type's limit is recorded before the task returns: until its success is written it counts as
    running, and its slot would stay taken while the worker goes on to the next message. A
    `fenced` attempt's success is offered once, at once: its serial decides, and it is counted
    as refused if the database says no or cannot be reached."""
    problem = _result_problem(value)
    if problem:
        services.job_fail(job_id=claim.job_id, serial=claim.serial, error_type="InvalidResult", message=problem)
        return
    success = services.Success(claim.job_id, claim.serial, value, timezone.now(), claim)
    if fenced:
        finisher.record_now(success, retry=False)
        return
    if claim.limit_key is not None and finisher.record_now(success):
        return
    finisher.record(success)


def _result_problem(value: Any) -> str | None:
    """Why a handler's return value cannot be stored as the job's result, if it cannot."""
    try:
        size = len(json.dumps(value, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        return f"the handler returned a value that is not JSON: {exc}"[:1000]
    if size > settings.JOB_MAX_RESULT_BYTES:
        return f"the handler's result is {size} bytes; the limit is {settings.JOB_MAX_RESULT_BYTES} bytes"
    problem = unstorable(value)  # the payload's check (jobs.rules.input_limits): NUL, lone surrogates, depth
    return f"the handler's result cannot be stored: {problem}" if problem else None


# Tasks of this process whose failure `failed` recorded; the task_failure receiver skips them.
_recorded: set[str] = set()
# This worker node's name, for the reports its main process makes without a task's request
# (Celery's hard time limit sends task_failure with no request on the task's stack).
_node: dict[str, str | None] = {"name": None}


@signals.celeryd_after_setup.connect
def _note_node_name(sender: str | None = None, **_: Any) -> None:
    _node["name"] = sender


def _already_recorded(task_id: str | None) -> bool:
    if task_id in _recorded:
        _recorded.discard(task_id)
        return True
    return False


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
    if getattr(sender, "name", None) != RUN_JOB_TASK or _already_recorded(task_id):
        return
    close_old_connections()  # this may be the worker's main process, whose connection may be stale
    if isinstance(exception, WorkerLostError):
        # Reported by the main process: the pool process running the job died (signal, OOM, or
        # ended by the fence, which knows the attempt's serial).
        serial = fence.killed.pop(task_id, (None, None))[1]
        _lost(sender, job_id=args[0] if args else None, exception=exception, serial=serial)
        return
    # Reported by the parent process after a hard time limit killed the child, or a failure
    # the task did not catch (BaseException): find this node's running attempt, if there is one.
    # Another node may run the job by now (this one froze past its lease): its attempt is not ours.
    job_id = args[0] if args else None
    worker = getattr(sender.request, "hostname", None) or _node["name"]
    serial = selectors.running_serial(job_id=job_id, worker=worker) if job_id and worker else None
    if serial is None:
        return
    trace = einfo.traceback if einfo is not None else "".join(tb.format_tb(traceback))
    _fail(job_id=job_id, serial=serial, exception=exception, trace=trace, worker=worker)


def failed(claim: services.Claim, exception: BaseException, *, task_id: str, fenced: bool = False) -> None:
    """A handler raised `exception`: the attempt failed, and the retry policy says what follows.
    The task raises it on for Celery's own reporting; the task_failure receiver then skips it. A
    failure the serial refuses is counted; a `fenced` attempt's is not retried (it is not ours)."""
    if not isinstance(exception, AttemptFenced):  # the task does not raise that one on (tasks.runner)
        _recorded.add(task_id)
    close_old_connections()  # the handler may have left the connection broken
    trace = "".join(tb.format_exception(exception))
    try:
        status = _fail(job_id=claim.job_id, serial=claim.serial, exception=exception, trace=trace)
    except DatabaseError:
        if not fenced:
            raise
        status = None
    if status is None:
        metrics.record_refused(outcome="failed")
        log.warning("job %s attempt %s: its failure was refused, the job has moved on", claim.job_id, claim.serial)


def _fail(
    *, job_id: str, serial: int, exception: BaseException | None, trace: str, worker: str | None = None
) -> str | None:
    return services.job_fail(
        job_id=job_id,
        serial=serial,
        worker=worker,
        error_type=type(exception).__name__,
        message=redact(_describe(exception)),
        traceback=redact(trace or ""),
        permanent=retry.is_permanent(exception),
    )


def _lost(task: Any, *, job_id: str | None, exception: BaseException, serial: int | None) -> None:
    worker = getattr(task.request, "hostname", None)
    if not job_id or not worker:
        return
    reason = f"worker process lost on {worker}: {_describe(exception)}"
    try:
        status = services.job_lost(job_id=job_id, worker=worker, reason=reason, serial=serial)
    except DatabaseError as exc:
        log.warning("job %s: %s; not recorded (%s), its lease will recover it", job_id, reason, exc)
        return
    if status is not None:
        log.warning("job %s: %s; %s", job_id, reason, "queued again" if status == "queued" else f"now {status}")
