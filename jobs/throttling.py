"""DRF rate limits that fail open: with Redis unreachable, jobs are still accepted into the database."""

import logging

import redis
from rest_framework import throttling

log = logging.getLogger("jobqueue.api")


class FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit not applied, its store is unreachable: %s", exc)
            return True


class UserRateThrottle(FailOpen, throttling.UserRateThrottle):
    """Per token: JOB_THROTTLE_USER."""


class AnonRateThrottle(FailOpen, throttling.AnonRateThrottle):
    """Per client address, for requests without a token: JOB_THROTTLE_ANON."""
