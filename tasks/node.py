"""Worker-node metrics and liveness.

- At start (celeryd_init, main process, before the pool forks) the node gets its own empty
  PROMETHEUS_MULTIPROC_DIR and switches the job metrics to it; every pool process then
  writes its own file there, and files of replaced pool processes keep their counts.
- The main process serves them all on JOB_WORKER_METRICS_ADDR:JOB_WORKER_METRICS_PORT
  (/metrics), next to a liveness check (/healthz).
- A consumer step notes each turn of the worker's event loop. While the loop turns, the
  main process announces the node in Redis every JOB_WORKER_HEARTBEAT_SECONDS (for the
  `workers_online` gauge and /healthz?workers=1); when it has not turned for
  JOB_LIVENESS_SECONDS, the node stops announcing and its /healthz answers 503.
"""

import contextlib
import logging
import os
import threading
import time
from typing import Any

import redis
from celery import bootsteps, signals
from django.conf import settings
from prometheus_client import CollectorRegistry, multiprocess

from jobs.adapters import broker, metrics, metrics_http, multiproc

log = logging.getLogger("jobqueue.worker")

_node: dict[str, Any] = {"dir": None, "hostname": "", "loop_turned": None}


@signals.celeryd_init.connect
def _use_own_metrics_dir(**_: Any) -> None:
    path = multiproc.prepare("worker")
    metrics.use_multiprocess(str(path))
    _node["dir"] = path


def _loop_turned() -> None:
    _node["loop_turned"] = time.monotonic()


def loop_age() -> float:
    """Seconds since the event loop last turned (infinite before it started)."""
    turned = _node["loop_turned"]
    return float("inf") if turned is None else time.monotonic() - turned


class LoopTick(bootsteps.StartStopStep):
    """Runs on the consumer's timer, which only fires while its event loop turns; restarts with the consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.entry = None

    def start(self, parent: Any) -> None:
        _loop_turned()
        self.entry = parent.timer.call_repeatedly(settings.JOB_WORKER_HEARTBEAT_SECONDS, _loop_turned, priority=10)

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop


def health() -> tuple[bool, dict]:
    age = loop_age()
    alive = age < settings.JOB_LIVENESS_SECONDS
    report = {"status": "ok" if alive else "stuck", "worker": _node["hostname"]}
    report["event_loop_age_seconds"] = None if age == float("inf") else round(age, 3)
    return alive, report


def _announce_while_alive(hostname: str) -> None:
    interval = settings.JOB_WORKER_HEARTBEAT_SECONDS
    while True:
        if loop_age() < settings.JOB_LIVENESS_SECONDS:
            try:
                broker.worker_announce(hostname=hostname, ttl=interval * 3)
            except (redis.RedisError, OSError) as exc:
                log.warning("worker heartbeat to Redis failed: %s", exc)
        time.sleep(interval)


@signals.worker_ready.connect
def _start_monitoring(sender: Any = None, **_: Any) -> None:
    hostname = _node["hostname"] = getattr(sender, "hostname", "") or ""
    threading.Thread(target=_announce_while_alive, args=(hostname,), name="jobqueue-announce", daemon=True).start()
    port = settings.JOB_WORKER_METRICS_PORT
    if port and _node["dir"] is not None:
        metrics.start_at_zero(metrics.WORKER_METRICS)
        metrics.start_fence_metrics_at_zero()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(_node["dir"]))
        addr = settings.JOB_WORKER_METRICS_ADDR
        metrics_http.serve(name=f"worker {hostname}", addr=addr, port=port, registry=registry, health=health)


@signals.worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    if _node["dir"] is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), path=str(_node["dir"]))


@signals.worker_shutdown.connect
def _stop_monitoring(**_: Any) -> None:
    if _node["hostname"]:
        with contextlib.suppress(redis.RedisError, OSError):  # else the announcement expires by itself
            broker.worker_withdraw(hostname=_node["hostname"])
    if _node["dir"] is not None:
        multiproc.remove(_node["dir"])
