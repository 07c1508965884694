"""Rate limits: one counter per token (or client address) in Redis, and failing open.

Each counter counts the requests of a window that opens with the first one and lasts the rate's
period. One script per request (one round trip, atomic in Redis) counts the request, gives a counter
without an expiry the window's, and reads how long the window has left: the web processes never lose
each other's requests, and no counter outlives its window (a counter that did would refuse its
client for good).

DRF checks the limits only once authentication and permissions passed, so a request with a wrong
token, or with none where one is needed, would never be counted: the API's error answer counts it
toward the anonymous limit of its address (`refused_anonymous`) and answers 429 past it; so does
/metrics for a wrong bearer token.

With Redis unreachable the limits fail open: requests are let through (jobs are still accepted into
the database), and for JOB_BROKER_BACKOFF_SECONDS after a failure a process does not try Redis
again, so no request waits on a dead store."""

import logging
from functools import cache

import redis
from django.conf import settings
from rest_framework import exceptions, throttling

from jobs.adapters.addresses import client_address
from jobs.adapters.breaker import Breaker, breaker_for

log = logging.getLogger("jobqueue.api")

# KEYS[1]: the counter; ARGV[1]: the window in ms. Returns the count and the window's ms left.
COUNT = """
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""


@cache
def counter_store() -> tuple[redis.Redis, str, Breaker]:
    """The counters' Redis, where the cache lives (settings.CACHES), with its timeouts; and
    the prefix of their keys."""
    config = settings.CACHES["default"]
    client = redis.Redis.from_url(config["LOCATION"], **config.get("OPTIONS", {}))
    return client, f"{config.get('KEY_PREFIX', '')}:throttle:", breaker_for(config["LOCATION"])


@cache
def _count() -> redis.commands.core.Script:
    """The counting script (sent by its digest; loaded again if Redis forgot it)."""
    return counter_store()[0].register_script(COUNT)


def count_in_window(key: str, *, seconds: float) -> tuple[int, int]:
    """Count one more in the window of counter `key` (its name after the prefix), which opens
    with its first count and lasts `seconds`: (the count, the window's ms left). Raises
    redis.RedisError or OSError; the callers fail open."""
    count, left_ms = _count()(keys=[counter_store()[1] + key], args=[max(int(seconds * 1000), 1)])
    return count, left_ms


class RedisWindow:
    """Mixed into DRF's rate throttles, which name the counter (`get_cache_key`) and parse the
    rate ("200/second") into `num_requests` per `duration` seconds."""

    left: float = 0.0

    def get_ident(self, request) -> str:
        return client_address(request.META)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        store_breaker = counter_store()[2]
        if store_breaker.is_open():
            return True
        try:
            count, left_ms = count_in_window(key, seconds=self.duration)
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


class FailedAuthenticationThrottle(AnonRateThrottle):
    """The anonymous limit of the request's address, whoever the request otherwise is."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def refused_anonymous(request, view=None) -> exceptions.Throttled | None:
    """Count a request (DRF's or Django's) whose credentials were refused toward the anonymous
    limit of its address: the 429 to answer past it, else None."""
    throttle = FailedAuthenticationThrottle()
    if throttle.allow_request(request, view):
        return None
    return exceptions.Throttled(wait=throttle.wait())
