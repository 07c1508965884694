"""What the broker holds: queue lengths, in-flight messages and the dead-letter list.

Reads kombu's Redis layout: one list per queue, each message a JSON envelope whose body
(base64 JSON) starts with the task's args; delivered but unacked messages sit in the
`unacked` hash, with their delivery time in the `unacked_index` sorted set.
"""

import base64
import json
from functools import cache
from typing import Any

import redis
from django.conf import settings

from .states import DEAD_LETTER_QUEUE, QUEUES

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, socket_connect_timeout=2)


def job_id_of(envelope: Any) -> str | None:
    """The job id a kombu message carries, or None for anything else."""
    try:
        message = json.loads(envelope) if isinstance(envelope, str | bytes) else envelope
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def queue_lengths() -> dict[str, int]:
    pipe = client().pipeline()
    for queue in QUEUES:
        pipe.llen(queue)
    return dict(zip(QUEUES, pipe.execute(), strict=True))


def drop_queue(queue: str) -> int:
    """Remove every waiting message of a queue (the jobs stay queued in the database); returns how many."""
    pipe = client().pipeline(transaction=True)
    pipe.llen(queue)
    pipe.delete(queue)
    length, _ = pipe.execute()
    return length


def in_flight_job_ids(*, delivered_after: float) -> set[str]:
    """Jobs whose message a worker received after `delivered_after` (epoch seconds) and has not acked."""
    tags = client().zrangebyscore(UNACKED_INDEX, delivered_after, "+inf")
    if not tags:
        return set()
    ids = set()
    for raw in client().hmget(UNACKED, tags):
        if raw is not None:
            envelope = json.loads(raw)[0]
            job_id = job_id_of(envelope)
            if job_id:
                ids.add(job_id)
    return ids


def remove_dead_letters(job_ids: list[Any]) -> int:
    """Drop the dead-letter messages of these jobs (after a retry, resubmit or purge)."""
    wanted = {str(job_id) for job_id in job_ids}
    if not wanted:
        return 0
    removed = 0
    for raw in client().lrange(DEAD_LETTER_QUEUE, 0, -1):
        if job_id_of(raw) in wanted:
            removed += client().lrem(DEAD_LETTER_QUEUE, 1, raw)
    return removed


def dead_letter_job_ids() -> list[str]:
    return [job_id for raw in client().lrange(DEAD_LETTER_QUEUE, 0, -1) if (job_id := job_id_of(raw))]


def dead_letter_length() -> int:
    return client().llen(DEAD_LETTER_QUEUE)


WORKER_KEY_PREFIX = "jobqueue:worker:"


def worker_announce(*, hostname: str, ttl: float) -> None:
    """Say that worker node `hostname` is alive for the next `ttl` seconds."""
    client().set(f"{WORKER_KEY_PREFIX}{hostname}", "1", px=max(int(ttl * 1000), 1))


def worker_withdraw(*, hostname: str) -> None:
    client().delete(f"{WORKER_KEY_PREFIX}{hostname}")


def workers_online(redis_client: redis.Redis | None = None) -> list[str]:
    """Worker nodes whose announcement has not expired."""
    keys = (redis_client or client()).scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=1000)
    return sorted(key.decode().removeprefix(WORKER_KEY_PREFIX) for key in keys)
