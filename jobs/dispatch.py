"""Dispatch: hands a job id to its Celery queue, always after the database commit."""

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from jobqueue_site.celery import DEAD_LETTER_QUEUE, app

log = logging.getLogger(__name__)

RUN_JOB_TASK = "jobqueue.run_job"
# Seconds between the soft limit (an exception the handler sees) and the hard kill.
HARD_LIMIT_GRACE = 5
# Messages per pipelined Redis round trip when many jobs are published at once.
BATCH = 1000


Dispatch = tuple[Any, str, int | None]  # (job id, queue, timeout seconds)


def _publish(job_id: Any, queue: str, timeout: int | None, producer: Any = None) -> None:
    seconds = timeout or settings.JOB_DEFAULT_TIMEOUT
    app.send_task(
        RUN_JOB_TASK,
        args=[str(job_id)],
        queue=queue,
        soft_time_limit=seconds,
        time_limit=seconds + HARD_LIMIT_GRACE,
        producer=producer,
    )


def send_job(*, job_id: Any, queue: str, timeout: int | None) -> None:
    """Publish the message that makes a worker run the job. Only ids travel, never objects."""
    _publish(job_id, queue, timeout)


def send_jobs(jobs: Iterable[Dispatch]) -> None:
    """Publish many jobs through pipelined batches: one Redis round trip per BATCH messages."""
    with app.producer_or_acquire() as producer, producer.batch(max_size=BATCH):
        for job_id, queue, timeout in jobs:
            _publish(job_id, queue, timeout, producer)


def send_job_on_commit(*, job_id: Any, queue: str, timeout: int | None) -> None:
    """Publish once the surrounding transaction commits; a broker error is logged, never raised.

    A job whose publish failed stays `queued` in the database, which stays the source of truth
    (the mover's redispatch sweep sends it again).
    """
    transaction.on_commit(partial(send_job, job_id=job_id, queue=queue, timeout=timeout), robust=True)


def send_jobs_on_commit(jobs: Iterable[Dispatch]) -> None:
    """`send_jobs` once the surrounding transaction commits; errors are logged, never raised."""
    transaction.on_commit(partial(send_jobs, list(jobs)), robust=True)


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
