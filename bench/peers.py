"""Optional baselines from other job libraries for scenario 1: RQ and Procrastinate.

Each runs only when its package is installed (`pip install -r requirements-bench.txt`);
otherwise its drain returns None and the report says it was not measured. Both drain the
same number of no-op jobs with two workers' worth of concurrency, like the Celery baseline.
"""

import os
import sys
import time
from pathlib import Path

from tests.servers import wait_for

from .stack import ROOT

RQ_QUEUE = "bench-rq"
PROCRASTINATE_QUEUE = "bench"


def noop() -> None:
    """The RQ job."""


def _binary(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def drain_rq(stack, count: int, concurrency: int) -> float | None:
    """RQ's SimpleWorker (runs jobs in the worker process, its fastest mode), `concurrency` workers."""
    try:
        from rq import Queue
    except ImportError:
        return None
    import redis

    connection = redis.Redis.from_url(stack.redis.url)
    queue = Queue(RQ_QUEUE, connection=connection)
    for start in range(0, count, 1000):
        batch = [Queue.prepare_data(noop, result_ttl=0) for _ in range(min(1000, count - start))]
        queue.enqueue_many(batch)
    stack.settle()
    command = [_binary("rq"), "worker", "-w", "rq.worker.SimpleWorker", "-u", stack.redis.url, RQ_QUEUE]
    workers = [stack.spawn(f"rq-{n}", command, django=False) for n in range(concurrency)]
    started = time.monotonic()

    def drained() -> bool:
        if not all(worker.alive() for worker in workers):
            raise RuntimeError("an RQ worker exited; see test-artifacts/bench-rq-*.log")
        return queue.count == 0 and queue.started_job_registry.count == 0

    wait_for(
        drained,
        timeout=3600,
        what="RQ to drain",
        interval=0.05,
    )
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.stop()
        stack.processes.remove(worker)
    return count / elapsed


def _procrastinate_app():
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))

    @app.task(name="bench.noop", queue=PROCRASTINATE_QUEUE)
    def procrastinate_noop() -> None:
        return None

    return app


# The app the Procrastinate worker's command line loads (its environment names the database).
try:
    procrastinate_app = _procrastinate_app()
except (ImportError, KeyError):  # not installed, or imported before the stack set DATABASE_URL
    procrastinate_app = None


def drain_procrastinate(stack, count: int, concurrency: int) -> float | None:
    """Procrastinate (jobs tracked in PostgreSQL) with a worker of `concurrency` concurrent jobs."""
    try:
        app = _procrastinate_app()
    except ImportError:
        return None
    from django.db import connection

    with app.open():
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            if not cursor.fetchone()[0]:
                app.schema_manager.apply_schema()
            cursor.execute("DELETE FROM procrastinate_jobs")
        task = app.tasks["bench.noop"]
        for start in range(0, count, 1000):
            task.batch_defer(*[{}] * min(1000, count - start))
    command = [
        _binary("procrastinate"),
        "--app",
        "bench.peers.procrastinate_app",
        "worker",
        "--concurrency",
        str(concurrency),
        "--queues",
        PROCRASTINATE_QUEUE,
    ]
    stack.settle()
    # Its command line imports the app by dotted path: from the checkout, like Celery's does.
    worker = stack.spawn("procrastinate", command, {"PYTHONPATH": str(ROOT)}, django=False)
    started = time.monotonic()

    def drained() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the Procrastinate worker exited: {worker.output()[-2000:]}")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
            return cursor.fetchone()[0] >= count

    wait_for(drained, timeout=3600, what="Procrastinate to drain", interval=0.05)
    elapsed = time.monotonic() - started
    worker.stop()
    stack.processes.remove(worker)
    return count / elapsed
