"""The retry policy: how long to wait after a failed attempt, and when to give up."""

import random
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from jobs.rules.exceptions import PermanentError, UnknownJobType

# Failures no retry can mend: the handler said so, or the job's type is not registered here.
PERMANENT_ERRORS = (PermanentError, UnknownJobType)


def is_permanent(error: BaseException | None) -> bool:
    """Whether a failure is not worth retrying."""
    return isinstance(error, PERMANENT_ERRORS)


def backoff_seconds(
    attempt: int, *, base: float | None = None, cap: float | None = None, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with equal jitter: a wait in [d/2, d] with d = min(cap, base *
    2**(attempt-1)). Equal jitter (rather than full jitter) keeps each wait at least as long as the
    one before, while still spreading a burst of failures over time."""
    base = settings.JOB_RETRY_BACKOFF_BASE if base is None else base
    cap = settings.JOB_RETRY_BACKOFF_MAX if cap is None else cap
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float
    reason: str


# The length of Job.reason.
MAX_REASON = 200


def after_failure(*, attempt: int, max_retries: int, permanent: bool, error: str = "") -> Decision:
    """What follows the failure of attempt number `attempt` (1-based) with the message `error`."""
    if permanent:
        return Decision(False, 0.0, _reason("permanent error, not retried", error))
    if attempt > max_retries:
        return Decision(False, 0.0, _reason(f"retries exhausted, {attempt} attempts failed", error))
    delay = backoff_seconds(attempt)
    prefix = f"attempt {attempt} failed, retry {attempt} of {max_retries} in {delay:.1f}s"
    return Decision(True, delay, _reason(prefix, error))


def _reason(prefix: str, error: str) -> str:
    """`prefix` and the error on one line, the error cut short to keep within MAX_REASON."""
    detail = " ".join(error.split())
    if not detail:
        return prefix
    room = MAX_REASON - len(prefix) - len(": ")
    if len(detail) > room:
        detail = detail[: room - 1] + "…"
    return f"{prefix}: {detail}"
