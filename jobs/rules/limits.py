"""Cluster-wide limits of a job type, as rules: `concurrency` (at most N running at once),
`rate` (at most N starts per period) and `limit_key` (the payload field that partitions both:
each value of `customer_id` gets its own limit, per owner of the job). Parsing and the checks of bad input, once."""

import re
from dataclasses import dataclass
from typing import Any

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The longest window a rate may have: what the mover keeps of the starts log.
MAX_PERIOD_SECONDS = PERIODS["day"]
RATE = re.compile(r"\s*(?P<count>\d+)\s*/\s*(?:(?P<period>second|minute|hour|day)|(?P<seconds>\d+)s)\s*")
KEY_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
MAX_KEY_VALUE = 150


class LimitProblem(ValueError):
    """A limit that cannot be: `field` names the part that is wrong."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    def __str__(self) -> str:
        names = {seconds: name for name, seconds in PERIODS.items()}
        return f"{self.count}/{names[self.seconds]}" if self.seconds in names else f"{self.count}/{self.seconds}s"


def parse_rate(text: str) -> Rate:
    """`"60/minute"`, `"5/second"`, `"100/hour"`, `"1000/day"` or `"10/30s"`; raises LimitProblem."""
    match = RATE.fullmatch(text or "")
    if match is None:
        raise LimitProblem(
            f"rate {text!r} does not parse: write N/second, N/minute, N/hour, N/day or N/Ks (such as 10/30s)",
            field="rate",
        )
    count = int(match["count"])
    seconds = PERIODS[match["period"]] if match["period"] else int(match["seconds"])
    if count < 1:
        raise LimitProblem(f"rate {text!r}: the number of starts must be 1 or more", field="rate")
    if not 1 <= seconds <= MAX_PERIOD_SECONDS:
        raise LimitProblem(f"rate {text!r}: the period must be 1 to {MAX_PERIOD_SECONDS} seconds", field="rate")
    return Rate(count, seconds)


@dataclass(frozen=True)
class Limit:
    """A type's limits; `None` for no limit of that kind. A limit with neither limits nothing."""

    concurrency: int | None = None
    rate: Rate | None = None
    key: str = ""

    @property
    def limits(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    def describe(self) -> str:
        parts = [f"concurrency {self.concurrency}"] if self.concurrency is not None else []
        parts += [f"rate {self.rate}"] if self.rate is not None else []
        return (", ".join(parts) or "unlimited") + (f" per {self.key}" if self.key and self.limits else "")

    def partition(self, payload: Any, *, owner: Any = None) -> str:
        """The partition of a job with `payload` submitted by `owner` (a user's id; None for a job
        from code). With a key, each owner's partitions are its own, so no client can use up (or
        time) another's: `owner 5: customer_id=7`, or `owner 5` without the field; a job from code
        gets `customer_id=7`, or "" without the field. No key: "", the type as a whole."""
        if not self.key:
            return ""
        value = payload.get(self.key) if isinstance(payload, dict) else None
        field = "" if value is None else f"{self.key}={value}"
        if owner is not None:
            field = f"owner {owner}: {field}" if field else f"owner {owner}"
        return field[:MAX_KEY_VALUE]


UNLIMITED = Limit()
# The largest concurrency the override's column holds on every database (a positive integer).
MAX_CONCURRENCY = 2**31 - 1


def make_limit(*, concurrency: int | None, rate: str | None, limit_key: str | None) -> Limit:
    """A checked Limit from what a person wrote; raises LimitProblem naming the field."""
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
        raise LimitProblem("concurrency must be a whole number of jobs", field="concurrency")
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        raise LimitProblem(f"concurrency must be from 1 to {MAX_CONCURRENCY} (got {concurrency})", field="concurrency")
    key = (limit_key or "").strip()
    if key and not KEY_FIELD.fullmatch(key):
        raise LimitProblem(f"limit_key {key!r} must be the name of a payload field", field="limit_key")
    return Limit(concurrency=concurrency, rate=parse_rate(rate) if rate else None, key=key)
