"""Dispatch: hands a job id to its Celery queue, always after the database commit.

The one place that decides whether a queue may receive messages: a paused queue gets none.
"""

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from celery.utils import uuid
from celery.utils.nodenames import anon_nodename
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string
from kombu.entity import PERSISTENT_DELIVERY_MODE as DELIVERY_MODE
from kombu.utils import json

from jobs.adapters import broker, internals
from jobs.adapters.breaker import breaker_for
from jobs.adapters.unavailable import broker_unavailable
from jobs.rules.states import DEAD_LETTER_QUEUE

log = logging.getLogger(__name__)

RUN_JOB_TASK = "jobqueue.run_job"
# Seconds between the soft limit (an exception the handler sees) and the hard kill.
HARD_LIMIT_GRACE = 5
# Messages per pipelined Redis round trip when many jobs are published at once.
BATCH = 1000


@cache
def celery_app() -> Any:
    """The Celery app, looked up by the name in JOB_CELERY_APP: the site wires it at the top."""
    return import_string(settings.JOB_CELERY_APP)


_paused_lock = threading.Lock()
_paused_cache: tuple[float, frozenset[str]] = (0.0, frozenset())


def paused_queues(*, fresh: bool = False) -> frozenset[str]:
    """Names of the paused queues, read from the database at most every JOB_PAUSE_CACHE_SECONDS."""
    global _paused_cache
    from jobs.models import QueueState

    with _paused_lock:
        expires, names = _paused_cache
        if fresh or time.monotonic() >= expires:
            names = frozenset(QueueState.objects.filter(paused=True).values_list("name", flat=True))
            _paused_cache = (time.monotonic() + settings.JOB_PAUSE_CACHE_SECONDS, names)
        return names


def forget_paused_queues() -> None:
    """Drop this process's cached pause states (after a pause or resume)."""
    global _paused_cache
    with _paused_lock:
        _paused_cache = (0.0, frozenset())


def queue_paused(queue: str) -> bool:
    """Whether `queue` is paused; a cached "paused" is always checked again in the database.

    So a stale cache can only let a message through to a paused queue (the claim then refuses
    the job, and the resume publishes it again), never hold back a queue that runs.
    """
    return queue in paused_queues() and queue in paused_queues(fresh=True)


Dispatch = tuple[Any, str, int | None, str]  # (job id, queue, timeout seconds, job type)


def _unpaused(job_id: Any, queue: str) -> bool:
    """Whether a job's message may go out: not while its queue is paused. A held-back job stays
    `queued` in the database and is published when its queue is resumed."""
    if queue_paused(queue):
        log.debug("queue %s is paused; job %s stays queued until it is resumed", queue, job_id)
        return False
    return True


def send_jobs(jobs: Iterable[Dispatch], *, front: bool = False) -> int:
    """Publish the messages that make workers run the jobs (only ids travel, never objects), in
    pipelined batches, one Redis round trip per BATCH messages; how many were published (a
    paused queue's jobs are not).

    `front`: at the end of the list workers take from next (a message sent again for a job
    that lost its own keeps the job's place in line), the last of `jobs` first.

    The messages are built here (`_envelope`) rather than by `send_task`, which costs several
    times more per message than the rest of a submission. They are the messages `send_task`
    would publish on the Redis broker; only Celery's task-sent event (for Flower) is not sent.
    """
    ready = [job for job in jobs if _unpaused(job[0], job[1])]
    if not ready:
        return 0
    with _channel() as (channel, origin):
        pipe = channel.client.pipeline(transaction=False)  # kombu's client: it adds the key prefix
        push = pipe.rpush if front else pipe.lpush  # kombu's workers take from the right
        for job_id, queue, timeout, job_type in ready:
            push(queue, _envelope(channel, origin, job_id, queue, timeout, job_type))
            if len(pipe) >= BATCH:
                pipe.execute()
        pipe.execute()
    return len(ready)


@contextmanager
def _channel() -> Iterator[tuple[Any, str]]:
    """A channel of the Celery app's broker connection, and this process's name as an origin."""
    with celery_app().producer_or_acquire() as producer:
        # One try: kombu would otherwise retry the connection for BROKER_CONNECTION_TIMEOUT,
        # sleeping 2 s first. The caller decides what a failed publish means.
        producer.connection.ensure_connection(max_retries=0)
        yield producer.channel, anon_nodename()


def _envelope(
    channel: Any, origin: str, job_id: Any, queue: str, timeout: int | None, job_type: str, **headers: str
) -> str:
    """The Redis list entry of one job's message: Celery's task message (protocol 2) in kombu's
    envelope, as `send_task` and kombu's Redis transport make it (priority 0, so the list is
    the queue's own name).

    The job type is the message's `shadow` name: the worker reports the task under it (its
    task-received event, its log lines), so Flower lists `email_welcome`, not the one task's name.
    """
    task_id, seconds = uuid(), timeout or settings.JOB_DEFAULT_TIMEOUT
    args = [str(job_id)]
    message = celery_app().amqp.as_task_v2(
        task_id,
        RUN_JOB_TASK,
        args=args,
        kwargs={},
        soft_time_limit=seconds,
        time_limit=seconds + HARD_LIMIT_GRACE,
        argsrepr=repr(args),
        kwargsrepr="{}",
        origin=origin,
        ignore_result=None,
        shadow=job_type or None,
    )
    properties = {**message.properties, "delivery_mode": DELIVERY_MODE}
    envelope = channel.prepare_message(
        json.dumps(message.body), 0, "application/json", "utf-8", {**message.headers, **headers}, properties
    )
    internals.kombu_route(channel, envelope, queue)
    return json.dumps(envelope)


# A publish that fails (Redis down or unreachable) opens the breaker: for the next
# JOB_BROKER_BACKOFF_SECONDS this process does not wait on the broker again; its publishes go
# straight to the pending table, so a submission answers fast while Redis is away.
broker_breaker = breaker_for(settings.CELERY_BROKER_URL)


# The last publish of this process that failed for a reason other than the broker (a bug), until
# one succeeds again; /healthz reports it.
_publish_bug = ""


def publish_problem() -> str:
    """Why this process's publishes fail when the broker is not to blame ("" if they do not)."""
    return _publish_bug


def publish_or_defer(jobs: list[Dispatch]) -> int:
    """Publish `jobs`; those the broker cannot take now are noted for the mover (`PendingDispatch`),
    which sends them once Redis answers.

    Only the broker being unavailable (`jobs.adapters.unavailable.broker_unavailable`) defers. Any other
    error is a bug: it is logged with its traceback and /healthz reports it until a publish
    succeeds; the jobs, committed, stay `queued` for the redispatch sweep. Never raises.
    """
    global _publish_bug
    if not jobs:
        return 0
    if broker_breaker.is_open():
        _defer(jobs, reason=broker_breaker.last_error)
        return 0
    try:
        sent = send_jobs(jobs)
    except Exception as exc:
        if not broker_unavailable(exc):
            _publish_bug = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("publishing %d jobs failed, not for the broker: they stay queued", len(jobs))
            return 0
        broker_breaker.trip(exc)
        _defer(jobs, reason=broker_breaker.last_error)
        return 0
    broker_breaker.reset()
    _publish_bug = ""
    return sent


def _defer(jobs: list[Dispatch], *, reason: str) -> None:
    from jobs.models import PendingDispatch

    rows = [PendingDispatch(job_id=job_id, queue=queue, timeout=timeout) for job_id, queue, timeout, _ in jobs]
    try:
        PendingDispatch.objects.bulk_create(rows, ignore_conflicts=True)
    except Exception as exc:
        # The jobs stay queued in the database; the redispatch sweep finds them (JOB_REDISPATCH_AFTER).
        log.warning("broker unavailable (%s) and %d jobs not noted as pending: %s", reason, len(rows), exc)
        return
    log.warning("broker unavailable (%s): %d jobs will be published when it is back", reason, len(rows))


def send_jobs_on_commit(jobs: Iterable[Dispatch]) -> None:
    """`publish_or_defer` once the surrounding transaction commits: a broker error is logged,
    never raised, and a job whose publish failed stays `queued` in the database, the source of
    truth, noted as pending until the mover can publish it."""
    pending = list(jobs)

    def publish_after_commit() -> None:
        publish_or_defer(pending)

    transaction.on_commit(publish_after_commit)


def send_dead_letter_on_commit(*, job_id: str, job_type: str, reason: str) -> None:
    """Park a copy of a dead job's message on the `dead_letter` queue, which no worker consumes.

    The copy is a convenience for broker-side tools; the database keeps the dead job either way,
    so a broker that cannot take it only costs a log line.
    """

    def park_after_commit() -> None:
        if broker_breaker.is_open():
            log.warning("broker unavailable: no dead-letter copy of job %s", job_id)
            return
        headers = {"x-job-type": job_type, "x-dead-reason": reason}
        try:
            with _channel() as (channel, origin):
                message = _envelope(channel, origin, job_id, DEAD_LETTER_QUEUE, None, job_type, **headers)
            broker.park_dead_letter(job_id, message)
        except Exception as exc:
            if not broker_unavailable(exc):
                log.exception("no dead-letter copy of job %s: not for the broker", job_id)
                return
            broker_breaker.trip(exc)
            log.warning("broker unavailable: no dead-letter copy of job %s: %s", job_id, broker_breaker.last_error)

    transaction.on_commit(park_after_commit)
