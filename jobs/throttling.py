"""Rate limits: one counter per token (or client address) in Redis, and failing open.

Each counter counts the requests of a window that opens with the first one and lasts the
rate's period. One pipelined round trip per request starts the window if there is none, counts
the request and reads how long the window has left; the count is atomic, so the web processes
never lose each other's requests.

With Redis unreachable the limits fail open: requests are let through (jobs are still accepted
into the database), and for JOB_BROKER_BACKOFF_SECONDS after a failure a process does not try
Redis again, so no request waits on a dead store.
"""

import logging
from functools import cache

import redis
from django.conf import settings
from rest_framework import throttling

from jobs.breaker import Breaker, breaker_for

log = logging.getLogger("jobqueue.api")


@cache
def counter_store() -> tuple[redis.Redis, str, Breaker]:
    """The counters' Redis, where the cache lives (settings.CACHES), with its timeouts; and
    the prefix of their keys."""
    config = settings.CACHES["default"]
    client = redis.Redis.from_url(config["LOCATION"], **config.get("OPTIONS", {}))
    return client, f"{config.get('KEY_PREFIX', '')}:throttle:", breaker_for(config["LOCATION"])


class RedisWindow:
    """Mixed into DRF's rate throttles, which name the counter (`get_cache_key`) and parse the
    rate ("200/second") into `num_requests` per `duration` seconds."""

    left: float = 0.0

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        client, prefix, store_breaker = counter_store()
        if store_breaker.is_open():
            return True
        key = prefix + key
        try:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, 0, ex=self.duration, nx=True)
            pipe.incr(key)
            pipe.pttl(key)
            _, count, left_ms = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            store_breaker.trip(exc)
            log.warning("rate limits not applied for %gs, their store is unreachable: %s", store_breaker.cooldown, exc)
            return True
        if count <= self.num_requests:
            return True
        self.left = max(left_ms, 0) / 1000
        return False

    def wait(self) -> float:
        return self.left


class UserRateThrottle(RedisWindow, throttling.UserRateThrottle):
    """Per token: JOB_THROTTLE_USER."""


class AnonRateThrottle(RedisWindow, throttling.AnonRateThrottle):
    """Per client address, for requests without a token: JOB_THROTTLE_ANON."""
