"""A circuit breaker: after a service failed, callers skip it for a while instead of waiting on it again.

Small enough to write here: one timestamp and the last error, per process.
"""

import threading
import time
from functools import cache

from django.conf import settings


class Breaker:
    def __init__(self, name: str, *, cooldown: float | None = None) -> None:
        self.name = name
        self._cooldown = cooldown
        self._until = 0.0
        self.last_error = ""
        self._lock = threading.Lock()

    @property
    def cooldown(self) -> float:
        return settings.JOB_BROKER_BACKOFF_SECONDS if self._cooldown is None else self._cooldown

    def is_open(self) -> bool:
        """True while the service failed less than `cooldown` seconds ago: do not call it."""
        return time.monotonic() < self._until

    def trip(self, exc: BaseException) -> None:
        with self._lock:
            self._until = time.monotonic() + self.cooldown
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def reset(self) -> None:
        if self._until:
            with self._lock:
                self._until = 0.0


@cache
def breaker_for(url: str) -> Breaker:
    """One breaker per Redis server: the broker and the rate limits' store are often the same
    one, and a request that found it dead through one need not wait on it through the other."""
    return Breaker(url.rsplit("@", 1)[-1])
