"""When to try a request again, and after how long: pure functions of what came back."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers that say "not now" rather than "no". Every call of the client is safe to repeat (reads,
# submits with their idempotency key, a cancel), so these are tried again.
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None, *, date: str | None = None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date. An HTTP date is
    measured from the answer's own `Date` header when it has one, so a client whose clock is off
    still waits what the server meant; a date in the past means now (0). None when the header is
    missing or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    target = _http_date(value)
    if target is None:
        return None
    reference = (_http_date(date) if date else None) or now or datetime.now(UTC)
    return max(0.0, (target - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a call is tried again, and how long it waits in between. `retries`: tries
    after the first, for each call. A `429` or `503` is tried again after its `Retry-After` (a
    backoff when it has none); one asking for more than `retry_after_max` seconds is not waited for,
    and its error says how long (`retry_after`). A connection that fails is tried again after an
    exponential backoff from `backoff` seconds, at most `backoff_max`, with jitter."""

    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0

    def backoff_for(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed try number `attempt` (1-based): half fixed, half jitter."""
        ceiling = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2

    def wait_after_answer(
        self, attempt: int, status: int, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before trying again after an answer with `status`; None: do not."""
        if status not in RETRYABLE_STATUSES or attempt > self.retries:
            return None
        if retry_after is None:
            return self.backoff_for(attempt, rand)
        return retry_after if retry_after <= self.retry_after_max else None

    def wait_after_failure(self, attempt: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before trying again after the connection failed; None: do not."""
        return None if attempt > self.retries else self.backoff_for(attempt, rand)
