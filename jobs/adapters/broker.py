"""What the broker holds: queue lengths, in-flight messages and the dead-letter list; the one
place that knows kombu's Redis layout (jobs/adapters/transport.py names its keys here too).

Every key starts with the transport's `global_keyprefix`. One list per queue (priority 0, so
the queue's own name), each message a JSON envelope whose body (base64 JSON) starts with the
task's args; delivered but unacked messages sit in the `unacked` hash, with their delivery time
in the `unacked_index` sorted set. The dead-letter list has an index of its own, job id ->
message, so a dead job's copy is dropped without reading the list.
"""

import base64
import json
import time
from functools import cache
from typing import Any

import redis
from django.conf import settings

from jobs.rules.states import DEAD_LETTER_QUEUE, QUEUES


def _option(name: str, default: str) -> str:
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(name) or default


def key(name: str) -> str:
    """The Redis key of a queue or of kombu's bookkeeping `name`."""
    return f"{_option('global_keyprefix', '')}{name}"


UNACKED = _option("unacked_key", "unacked")
UNACKED_INDEX = _option("unacked_index_key", "unacked_index")
DEAD_LETTER_INDEX = f"{DEAD_LETTER_QUEUE}_index"


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
        pipe.llen(key(queue))
    return dict(zip(QUEUES, pipe.execute(), strict=True))


def queued_job_ids(queue: str, *, among: set[str], chunk: int = 1000) -> set[str] | None:
    """Which of the jobs `among` have a message waiting in `queue`'s list; None if the list grew
    faster than it could be read (try again later).

    Read from the head, where messages are pushed, towards the tail, where workers take them: a
    push while it reads only makes it read some entries twice, and an entry taken meanwhile is
    in the `unacked` hash (or its job is claimed), so no waiting message is missed.
    """
    found: set[str] = set()
    start, stop = 0, 2 * client().llen(key(queue)) + chunk
    while start < stop:
        entries = client().lrange(key(queue), start, start + chunk - 1)
        found.update(job_id for raw in entries if (job_id := job_id_of(raw)) in among)
        if len(entries) < chunk:
            return found
        start += chunk
    return None


# A key the mover keeps in Redis: its absence means Redis lost its data (restarted empty, or
# flushed), and with it every waiting message.
DATA_MARKER = key("jobqueue:data_marker")


def data_marker_missing() -> bool:
    """Whether Redis no longer held the marker (it is written again at once, by one caller only)."""
    return bool(client().set(DATA_MARKER, str(time.time()), nx=True))


def started_at() -> float:
    """When the Redis server started (epoch seconds), from its uptime."""
    return time.time() - float(client().info("server")["uptime_in_seconds"])


def drop_queue(queue: str) -> int:
    """Remove every waiting message of a queue (the jobs stay queued in the database); returns how many."""
    pipe = client().pipeline(transaction=True)
    pipe.llen(key(queue))
    pipe.delete(key(queue))
    length, _ = pipe.execute()
    return length


def in_flight_job_ids(*, delivered_after: float) -> set[str]:
    """Jobs whose message a worker received after `delivered_after` (epoch seconds) and has not acked."""
    tags = client().zrangebyscore(key(UNACKED_INDEX), delivered_after, "+inf")
    if not tags:
        return set()
    ids = set()
    for raw in client().hmget(key(UNACKED), tags):
        if raw is not None:
            envelope = json.loads(raw)[0]
            job_id = job_id_of(envelope)
            if job_id:
                ids.add(job_id)
    return ids


def park_dead_letter(job_id: Any, message: str) -> None:
    """Put a dead job's message on the dead-letter list, which no worker consumes."""
    pipe = client().pipeline(transaction=True)
    pipe.lpush(key(DEAD_LETTER_QUEUE), message).hset(key(DEAD_LETTER_INDEX), str(job_id), message)
    pipe.execute()


def forget_dead_letters(job_ids: list[Any]) -> int:
    """Drop the dead-letter messages of these jobs (after a retry or a delete); how many."""
    ids = [str(job_id) for job_id in job_ids]
    if not ids:
        return 0
    pipe = client().pipeline(transaction=True)
    for message in client().hmget(key(DEAD_LETTER_INDEX), ids):
        if message is not None:
            pipe.lrem(key(DEAD_LETTER_QUEUE), 1, message)
    pipe.hdel(key(DEAD_LETTER_INDEX), *ids)
    return sum(pipe.execute()[:-1])


def dead_letter_indexed_ids() -> list[str]:
    """The job ids the dead-letter index holds a message for."""
    return [raw.decode() if isinstance(raw, bytes) else raw for raw in client().hkeys(key(DEAD_LETTER_INDEX))]


def dead_letter_job_ids() -> list[str]:
    return [job_id for raw in client().lrange(key(DEAD_LETTER_QUEUE), 0, -1) if (job_id := job_id_of(raw))]


def dead_letter_length() -> int:
    return client().llen(key(DEAD_LETTER_QUEUE))


# The worker nodes' heartbeats: one sorted set, node name -> when its heartbeat runs out (ms
# of Redis's clock, so the nodes' clocks need not agree). Reading who is online costs the
# nodes online, whatever else Redis holds; each heartbeat drops the ones that ran out.
WORKERS = key("jobqueue:workers")
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
ANNOUNCE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""
)
ONLINE = _NOW_MS + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"


@cache
def _script(text: str) -> Any:
    return client().register_script(text)


def worker_announce(*, hostname: str, ttl: float) -> None:
    """Say that worker node `hostname` is alive for the next `ttl` seconds."""
    _script(ANNOUNCE)(keys=[WORKERS], args=[hostname, max(int(ttl * 1000), 0)])


def worker_withdraw(*, hostname: str) -> None:
    client().zrem(WORKERS, hostname)


def workers_online(redis_client: redis.Redis | None = None) -> list[str]:
    """Worker nodes whose heartbeat has not run out."""
    names = _script(ONLINE)(keys=[WORKERS], client=redis_client or client())
    return sorted(name.decode() if isinstance(name, bytes) else name for name in names)
