"""Bare Celery with the same reliable settings as jobqueue (prefetch 1, late acks, priority order)."""

import os

from celery import Celery
from kombu import Queue

app = Celery("bench_baseline", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_queues=[Queue(name) for name in ("high", "medium", "low")],
    task_default_queue="medium",
    broker_transport_options={"queue_order_strategy": "priority", "visibility_timeout": 3600},
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Celery's countdown needs prefetch: it holds every pending ETA task in worker memory.
    worker_disable_prefetch=os.environ.get("BENCH_DISABLE_PREFETCH", "1") == "1",
    task_ignore_result=True,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
def stamp(due: float) -> None:
    """Records how late (seconds) the task started after its countdown ran out."""
    import time

    import redis

    redis.Redis.from_url(app.conf.broker_url).rpush("bench:lateness", time.time() - due)
