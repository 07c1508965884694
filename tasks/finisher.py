"""Successful attempts recorded off the task's path, many at a time, by one writer per process.

A task hands its success over and returns at once, so the worker acks the message and takes the next
one while the writer records what has piled up in one statement (`services.jobs_succeed`). The ack
can thus come a few milliseconds before the success is durable: if the process dies in between, the
job stays `running` until its lease runs out and is then run again. Delivery stays at least once;
only the status lags the ack.

A process that exits normally (a warm shutdown, a pool process replaced after max_tasks_per_child)
records what is pending before it goes."""

import logging
import os
import queue
import threading
import time

from celery import signals
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from jobs import services
from jobs.adapters import metrics

log = logging.getLogger("jobqueue.worker")

# Successes recorded per statement, at most.
BATCH = 500
# Seconds between attempts while the database cannot be written.
RETRY_SECONDS = 1.0
# Seconds a process that exits waits for the writer to record what is pending.
DRAIN_SECONDS = 10.0

_lock = threading.Lock()
_pending: "queue.SimpleQueue[object]" = queue.SimpleQueue()
_writer_pid: int | None = None
_unrecorded = 0  # handed over and not yet written (or found stale)
_done = threading.Condition(_lock)


def record(success: services.Success) -> None:
    """Hand a success to this process's writer (started on first use, again after a fork)."""
    global _writer_pid, _pending, _unrecorded
    with _lock:
        if _writer_pid != os.getpid():
            # Forked: the parent's queue and thread are not ours.
            _pending = queue.SimpleQueue()
            _unrecorded = 0
            _writer_pid = os.getpid()
            writer = threading.Thread(target=_write_forever, args=(_pending,), name="jobqueue-finisher", daemon=True)
            writer.start()
        _unrecorded += 1
        _pending.put(success)


def record_now(success: services.Success, *, retry: bool = True) -> bool:
    """Write one success in the caller's thread; False if the database could not be written
    (hand it to the writer then, which retries; without `retry` it counts as refused)."""
    try:
        _count_refused([success], services.jobs_succeed([success]))
    except DatabaseError as exc:
        close_old_connections()
        if not retry:
            _count_refused([success], [])
            return True
        log.warning("recording finished job %s failed, handing it to the writer: %s", success.job_id, exc)
        return False
    return True


def _count_refused(successes: list[services.Success], recorded: list[services.Success]) -> None:
    """Successes the serial fence refused: their attempt had lost its job (tasks.fence)."""
    if refused := len(successes) - len(recorded):
        metrics.record_refused(outcome="succeeded", count=refused)
        log.warning("%d finished attempts refused: their jobs had moved on", refused)


def pending() -> int:
    """Successes handed over and not yet written."""
    with _lock:
        return _unrecorded if _writer_pid == os.getpid() else 0


def drain(timeout: float = DRAIN_SECONDS) -> bool:
    """Wait until everything handed over is written; False if `timeout` ran out first."""
    deadline = time.monotonic() + timeout
    with _done:
        while _writer_pid == os.getpid() and _unrecorded:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _done.wait(left)
    return True


def _write_forever(pending: "queue.SimpleQueue[object]") -> None:
    global _unrecorded
    while True:
        batch = [pending.get()]
        # Sleep through the window rather than wake for each success that arrives in it: every
        # wake-up would take the interpreter from the task running next.
        time.sleep(settings.JOB_FINISH_WINDOW)
        while len(batch) < BATCH:
            try:
                batch.append(pending.get_nowait())
            except queue.Empty:
                break
        _write(batch)
        with _done:
            _unrecorded -= len(batch)
            _done.notify_all()


def _write(batch: list) -> None:
    """Write one batch, retrying while the database is unreachable. Each success is fenced by its
    attempt's serial, so a batch written late (after the lease recovery moved a job on) changes
    nothing for that job. A batch written again after a failure part-way still counts and wakes for
    the jobs the failed try moved, once (jobs_succeed notes its progress on each success)."""
    while True:
        try:
            _count_refused(batch, services.jobs_succeed(batch))
            return
        except DatabaseError as exc:
            log.warning("recording %d finished jobs failed, retrying: %s", len(batch), exc)
            close_old_connections()
            time.sleep(RETRY_SECONDS)
        except Exception:
            # Not a database outage: retrying would not help. The jobs stay running until
            # their leases run out and are requeued; the writer goes on with the next batch.
            log.exception("recording %d finished jobs failed; their leases will requeue them", len(batch))
            return


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _drain_on_exit(**_: object) -> None:
    if not drain():
        log.warning("exiting with %d finished jobs not recorded; their leases will requeue them", pending())
