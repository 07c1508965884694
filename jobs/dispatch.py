"""Dispatch: hands a job id to its Celery queue, always after the database commit."""

import logging
from functools import partial

from django.conf import settings
from django.db import transaction

from jobqueue_site.celery import DEAD_LETTER_QUEUE, app

log = logging.getLogger(__name__)

RUN_JOB_TASK = "jobqueue.run_job"
# Seconds between the soft limit (an exception the handler sees) and the hard kill.
HARD_LIMIT_GRACE = 5


def send_job(*, job_id: str, queue: str, timeout: int | None) -> None:
    """Publish the message that makes a worker run the job. Only ids travel, never objects."""
    seconds = timeout or settings.JOB_DEFAULT_TIMEOUT
    app.send_task(
        RUN_JOB_TASK,
        args=[str(job_id)],
        queue=queue,
        soft_time_limit=seconds,
        time_limit=seconds + HARD_LIMIT_GRACE,
    )


def send_job_on_commit(*, job_id: str, queue: str, timeout: int | None) -> None:
    """Publish once the surrounding transaction commits; a broker error is logged, never raised.

    A job whose publish failed stays `queued` in the database, which stays the source of truth.
    """
    transaction.on_commit(partial(send_job, job_id=job_id, queue=queue, timeout=timeout), robust=True)


def send_dead_letter_on_commit(*, job_id: str, job_type: str, reason: str) -> None:
    """Park a copy of a dead job's message on the `dead_letter` queue, which no worker consumes."""
    publish = partial(
        app.send_task,
        RUN_JOB_TASK,
        args=[str(job_id)],
        queue=DEAD_LETTER_QUEUE,
        headers={"x-job-type": job_type, "x-dead-reason": reason},
    )
    transaction.on_commit(publish, robust=True)
