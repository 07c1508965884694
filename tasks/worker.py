"""Worker-side upkeep: the claim, and graceful shutdown (the leases of running jobs: tasks.fence).

On SIGTERM (Celery's warm shutdown) running jobs get JOB_SHUTDOWN_GRACE seconds to finish; then the
pool processes are killed, their jobs go back to the queue at once, and the worker exits. Send
SIGTERM to the worker's main process only (docker stop and Kubernetes do; under systemd use
KillMode=mixed): pool processes that get it themselves die mid-job, and their jobs are recovered by
the lease instead."""

import logging
import os
import signal
import threading
import time
from typing import Any

import psutil
from celery import signals
from celery.exceptions import Reject
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from jobs import services
from jobs.adapters.unavailable import database_unavailable
from jobs.services import selectors

log = logging.getLogger("jobqueue.worker")


@signals.task_prerun.connect
def _heal_connections(**_: object) -> None:
    """Before each job, drop a database connection that failed or outlived CONN_MAX_AGE (Celery's
    Django fixup only looks every CELERY_DB_REUSE_MAX tasks); the next query opens a new one."""
    close_old_connections()


def claim_when_reachable(*, job_id: str, worker: str, request: Any) -> services.Claim | None:
    """`services.job_claim`, waiting out a database outage instead of dropping the message. While
    the database cannot be reached (or is read-only, as after a failover onto a standby, until the
    writable node is back) the claim is tried again, backing off up to 2 s, so a worker holds one
    message per pool process rather than spinning through its queue. Past JOB_DATABASE_WAIT_SECONDS
    (and before the task's soft time limit) the message goes back to its queue for a later try."""
    deadline = time.monotonic() + _wait_budget(request)
    pause = 0.1
    while True:
        try:
            # The message names the job's type (its shadow name): a limited type's claim is the limited one.
            return services.job_claim(job_id=job_id, worker=worker, job_type=getattr(request, "shadow", None))
        except DatabaseError as exc:
            if not database_unavailable(exc):
                raise
            close_old_connections()  # the failed connection is dropped; the next try opens one
            if time.monotonic() + pause > deadline:
                log.warning("job %s: database unavailable, its message goes back to the queue: %s", job_id, exc)
                raise Reject(f"database unavailable: {exc}", requeue=True) from exc
            log.warning("job %s: database unavailable, claim tried again in %.1fs: %s", job_id, pause, exc)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _wait_budget(request: Any) -> float:
    soft = (getattr(request, "timelimit", None) or (None, None))[1]
    budget = settings.JOB_DATABASE_WAIT_SECONDS
    return budget if not soft else max(0.0, min(budget, soft - 1.0))


@signals.worker_shutting_down.connect
def _on_shutting_down(sender: str | None = None, how: str | None = None, **_: object) -> None:
    if how == "Warm" and sender:
        threading.Thread(target=_requeue_after_grace, args=(str(sender),), daemon=True).start()


def _requeue_after_grace(hostname: str) -> None:
    deadline = time.monotonic() + settings.JOB_SHUTDOWN_GRACE
    while time.monotonic() < deadline:
        if not selectors.running_on(worker=hostname):
            return
        time.sleep(0.2)
    children = psutil.Process().children()
    for child in children:
        child.send_signal(signal.SIGKILL)
    psutil.wait_procs(children, timeout=5)
    for job_id, serial in selectors.running_on(worker=hostname):
        reason = f"worker {hostname} shut down; requeued after the {settings.JOB_SHUTDOWN_GRACE:g}s grace period"
        if services.job_requeue(job_id=job_id, serial=serial, reason=reason):
            log.warning("requeued job %s at shutdown", job_id)
    # The pool would wait forever for the results of the killed processes (and a threads or
    # solo pool cannot stop a handler at all): leave now. Messages still unacked are redelivered
    # after the visibility timeout and find their job already handled.
    logging.shutdown()
    os._exit(0)
