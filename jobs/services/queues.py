"""Pausing and resuming queues. The state lives in the database, so it outlives every process.

While a queue is paused nothing from it runs: dispatch publishes nothing for it (jobs stay `queued`
in the database), its waiting messages are removed from Redis, the claim refuses its jobs (so a
message already on its way runs nothing) and the redispatch sweep skips it. On resume, its queued
jobs are published again, oldest first."""

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

from jobs.adapters import broker, dispatch
from jobs.models import Job, QueueSample, QueueState
from jobs.rules.exceptions import UnknownQueue
from jobs.rules.states import Priority, Status
from jobs.services import selectors

log = logging.getLogger("jobqueue.jobs")


def _check(queue: str) -> None:
    if queue not in Priority.values:
        raise UnknownQueue(f"no queue named {queue!r}; the queues are {', '.join(Priority.values)}")


def queue_state(queue: str) -> QueueState:
    """The stored state of a queue; a queue never paused has none stored and runs."""
    _check(queue)
    return QueueState.objects.filter(name=queue).first() or QueueState(name=queue, paused=False)


def queue_pause(*, queue: str, by: str = "") -> QueueState:
    """Stop a queue: nothing of it runs until `queue_resume`. Jobs already running finish."""
    _check(queue)
    state, _ = QueueState.objects.update_or_create(name=queue, defaults={"paused": True, "changed_by": by[:150]})
    dispatch.forget_paused_queues()
    try:
        dropped = broker.drop_queue(queue)
    except (redis.RedisError, OSError) as exc:
        # Still paused: any message left is refused by the claim and published again on resume.
        log.warning("queue %s paused by %s; its waiting messages could not be removed: %s", queue, by, exc)
        return state
    log.info("queue %s paused by %s; %d waiting messages removed", queue, by or "unknown", dropped)
    return state


def queue_resume(*, queue: str, by: str = "") -> tuple[QueueState, int]:
    """Start a paused queue again and publish its queued jobs, oldest first; returns (state,
    published). Resuming a queue that is not paused changes nothing and publishes nothing."""
    _check(queue)
    paused = QueueState.objects.filter(name=queue, paused=True)
    resumed = paused.update(paused=False, changed_by=by[:150], changed_at=timezone.now())
    dispatch.forget_paused_queues()
    # Read after the resume is committed: a job queued later is published by its own dispatch.
    waiting = Job.objects.filter(status=Status.QUEUED, priority=queue).order_by("created_at")
    rows = list(waiting.values_list("pk", "priority", "timeout", "type")) if resumed else []
    # In pipelined batches; while Redis is away they wait in the pending table for the mover.
    published = dispatch.publish_or_defer(rows)
    if resumed:
        who = by or "unknown"
        log.info("queue %s resumed by %s; %d of %d queued jobs published", queue, who, published, len(rows))
    return queue_state(queue), published


def queues_sample(*, now: datetime | None = None) -> int:
    """Write each queue's depth and latency now, for the overview's charts, and prune samples older
    than JOB_QUEUE_SAMPLE_KEEP_SECONDS; returns the samples written. A sample's time is the start of
    its JOB_QUEUE_SAMPLE_SECONDS period: a second mover in the same period writes nothing (the rows
    are unique per queue and time)."""
    now = now or timezone.now()
    period = max(settings.JOB_QUEUE_SAMPLE_SECONDS, 1.0)
    at = datetime.fromtimestamp(now.timestamp() // period * period, tz=now.tzinfo)
    rows = [
        QueueSample(
            queue=queue["name"],
            at=at,
            depth=queue["depth"],
            queued=queue["queued"],
            latency_seconds=queue["latency_seconds"],
            paused=queue["paused"],
        )
        for queue in selectors.queue_overview()
    ]
    QueueSample.objects.bulk_create(rows, ignore_conflicts=True)
    QueueSample.objects.filter(at__lt=now - timedelta(seconds=settings.JOB_QUEUE_SAMPLE_KEEP_SECONDS)).delete()
    return len(rows)
