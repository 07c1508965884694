"""The admin's login, locked for an address after too many failed tries.

Failures are counted per client address in Redis, shared by every web process, in a window of
JOB_LOGIN_LOCKOUT_SECONDS that opens with the first failure: after JOB_LOGIN_MAX_FAILURES the
address is refused, even with the right password, until the window ends. Written here on the
rate limits' Redis rather than with django-axes, which would add its own tables, middleware and
authentication backend for what is one counter. If Redis does not answer, logins are not
locked (fail open, as the rate limits are) and the password check still applies.
"""

import logging

import redis
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from jobs.adapters.addresses import client_address
from jobs.api import throttling

log = logging.getLogger("jobqueue.admin")


class LockoutAuthenticationForm(AdminAuthenticationForm):
    def clean(self):
        key = f"login-failures:{client_address(self.request.META)}" if self.request is not None else None
        if key is not None and self._failures(key) >= settings.JOB_LOGIN_MAX_FAILURES:
            minutes = max(1, round(settings.JOB_LOGIN_LOCKOUT_SECONDS / 60))
            raise ValidationError(
                f"Too many failed logins from your address; try again in up to {minutes} minutes.", code="locked"
            )
        try:
            return super().clean()
        except ValidationError:
            if key is not None:
                self._count_failure(key)
            raise

    @staticmethod
    def _failures(key: str) -> int:
        client, prefix, breaker = throttling.counter_store()
        if breaker.is_open():
            return 0
        try:
            return int(client.get(prefix + key) or 0)
        except (redis.RedisError, OSError) as exc:
            breaker.trip(exc)
            log.warning("admin login lockout not applied, its store is unreachable: %s", exc)
            return 0

    @staticmethod
    def _count_failure(key: str) -> None:
        breaker = throttling.counter_store()[2]
        if breaker.is_open():
            return
        try:
            throttling.count_in_window(key, seconds=settings.JOB_LOGIN_LOCKOUT_SECONDS)
        except (redis.RedisError, OSError) as exc:
            breaker.trip(exc)
            log.warning("admin login failure not counted, its store is unreachable: %s", exc)
