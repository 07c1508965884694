"""The faults, each a function of the stack that breaks something and returns when it ended.

Shared by the fault suite (one test per fault) and `make chaos` (random faults for minutes).
What "ended" means: the service is back, or the killed process was started again.
"""

import random
import signal
import time
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from .conftest import THREADS_NODE, WORKERS, Stack

OUTAGE = 10.0  # seconds a stopped service stays down


def postgres_fast_restart(stack: Stack) -> datetime:
    stack.postgres.restart_fast()
    return timezone.now()


def postgres_down(stack: Stack, *, during: Callable[[], None] | None = None) -> datetime:
    stack.postgres.stop_fast()
    try:
        started = time.monotonic()
        if during is not None:
            during()
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))
    finally:
        stack.postgres.start_again()
    return timezone.now()


def postgres_connections_cut(stack: Stack) -> datetime:
    stack.pg_proxy.cut()
    return timezone.now()


def redis_restart_empty(stack: Stack) -> datetime:
    stack.redis.restart_empty()
    return timezone.now()


def redis_down(stack: Stack) -> datetime:
    stack.redis.snapshot()  # Redis with persistence: what it held comes back with it
    stack.redis.kill()
    try:
        time.sleep(OUTAGE)
    finally:
        stack.redis.start()
    return timezone.now()


def redis_connections_cut(stack: Stack) -> datetime:
    stack.redis_proxy.cut()
    return timezone.now()


def redis_connections_cut_3x(stack: Stack) -> datetime:
    for _ in range(3):
        stack.redis_proxy.cut()
        time.sleep(1)
    return timezone.now()


def redis_connections_orphaned(stack: Stack) -> datetime:
    """Every open connection to Redis goes silent for good (half-open); new ones work."""
    stack.redis_proxy.orphan()
    return timezone.now()


def smtp_down(stack: Stack) -> datetime:
    stack.smtp.stop()
    try:
        time.sleep(OUTAGE)
    finally:
        stack.smtp.start()
    return timezone.now()


def _restarted(stack: Stack, name: str, sig: int, *, after: float) -> datetime:
    stack.kill(name, sig)
    time.sleep(after)
    stack.start(name)
    return timezone.now()


def mover_killed(stack: Stack) -> datetime:
    return _restarted(stack, "mover", signal.SIGKILL, after=2)


def web_killed(stack: Stack) -> datetime:
    return _restarted(stack, "web", signal.SIGKILL, after=2)


def worker_node_killed(stack: Stack, name: str = "w2") -> datetime:
    """The node and its pool at once, as a machine crash: its jobs wait for their lease."""
    return _restarted(stack, name, signal.SIGKILL, after=1)


def pool_processes_killed(stack: Stack, name: str = "w1") -> datetime:
    """kill -9 of a prefork node's pool processes, as the OOM killer does; the node lives on."""
    for child in stack.pool_children(name):
        child.kill()
    return timezone.now()


def worker_sigterm_main(stack: Stack, name: str = "w3") -> datetime:
    """SIGTERM to the main process only, as docker stop and Kubernetes do; started again once it left."""
    stack.kill(name, signal.SIGTERM, group=False)
    stack.wait_exited(name, timeout=30)
    stack.start(name)
    return timezone.now()


def worker_sigterm_group(stack: Stack, name: str = "w1") -> datetime:
    """SIGTERM to the node's whole process group (systemd's default KillMode)."""
    stack.kill(name, signal.SIGTERM, group=True)
    stack.wait_exited(name, timeout=30)
    stack.start(name)
    return timezone.now()


PREFORK_NODES = [name for name in WORKERS if name != THREADS_NODE]

# name -> fault with its victim drawn at random where it has one.
FAULTS: dict[str, Callable[[Stack, random.Random], datetime]] = {
    "postgres-fast-restart": lambda stack, rnd: postgres_fast_restart(stack),
    "postgres-down-10s": lambda stack, rnd: postgres_down(stack),
    "postgres-connections-cut": lambda stack, rnd: postgres_connections_cut(stack),
    "redis-restart-empty": lambda stack, rnd: redis_restart_empty(stack),
    "redis-down-10s": lambda stack, rnd: redis_down(stack),
    "redis-connections-cut": lambda stack, rnd: redis_connections_cut(stack),
    "redis-connections-cut-3x": lambda stack, rnd: redis_connections_cut_3x(stack),
    "redis-connections-half-open": lambda stack, rnd: redis_connections_orphaned(stack),
    "smtp-down-10s": lambda stack, rnd: smtp_down(stack),
    "mover-kill-9": lambda stack, rnd: mover_killed(stack),
    "web-kill-9": lambda stack, rnd: web_killed(stack),
    "worker-node-kill-9": lambda stack, rnd: worker_node_killed(stack, rnd.choice(WORKERS)),
    "pool-process-kill-9": lambda stack, rnd: pool_processes_killed(stack, rnd.choice(PREFORK_NODES)),
    "worker-sigterm-main": lambda stack, rnd: worker_sigterm_main(stack, rnd.choice(WORKERS)),
    "worker-sigterm-group": lambda stack, rnd: worker_sigterm_group(stack, rnd.choice(WORKERS)),
}
