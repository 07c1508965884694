"""When a schedule's ticks fall: cron expressions and fixed intervals in a time zone. Pure functions.

Cron expressions are parsed and iterated by cronsim, which follows Debian cron across DST
changes: a job at a fixed local time whose time does not exist that day (spring forward)
runs once at the first minute after the gap; one whose time happens twice (fall back) runs
once, at the first occurrence. Expressions with a wildcard hour (`*/30 * * * *`) keep their
period in real time on both days. Every result is an aware datetime in UTC.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobs.rules.exceptions import InvalidSubmission

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def expand_cron(cron: str) -> str:
    """The five fields of a cron expression or an alias (no validation)."""
    text = " ".join(cron.split())
    return ALIASES.get(text.lower(), text)


def validate_cron(cron: str) -> str:
    """A cron expression as stored (whitespace normalised, alias kept); raises naming `cron`."""
    text = " ".join(cron.split()) if isinstance(cron, str) else ""
    if not text:
        raise InvalidSubmission("cron must be five fields or an alias such as @hourly", field="cron")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            known = ", ".join(ALIASES)
            raise InvalidSubmission(f"unknown cron alias {text!r}; known aliases: {known}", field="cron")
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidSubmission(
            f"cron must have five fields ({', '.join(CRON_FIELDS)}), not {len(fields)}", field="cron"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, IndexError) as exc:
        raise InvalidSubmission(f"cron expression {text!r} is not valid: {exc}", field="cron") from None
    return text


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; raises naming `timezone`."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidSubmission("timezone must be an IANA time zone name such as Europe/Berlin", field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSubmission(
            f"unknown time zone {name!r}; give an IANA name such as Europe/Berlin", field="timezone"
        ) from None


# The longest interval: what the schedule's column (a 32-bit integer on every database) holds.
LONGEST_INTERVAL = 2**31 - 1


def validate_interval(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= LONGEST_INTERVAL:
        raise InvalidSubmission(
            f"interval_seconds must be a whole number of seconds from 1 to {LONGEST_INTERVAL}", field="interval_seconds"
        )
    return seconds


def first_interval_tick(*, interval_seconds: int, now: datetime) -> datetime:
    """The first tick of a new interval schedule: one interval from now (to the whole second).
    It anchors every later tick: they fall at first + k * interval, however late each fires."""
    return now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=interval_seconds)


def next_tick(
    *,
    cron: str = "",
    interval_seconds: int | None = None,
    tz: str = "UTC",
    anchor: datetime | None = None,
    after: datetime,
) -> datetime:
    """The first tick strictly after `after`. Interval ticks fall at anchor + k * interval (any whole k),
    `anchor` being any earlier tick of the schedule; cron ticks ignore it."""
    return next(ticks_after(cron=cron, interval_seconds=interval_seconds, tz=tz, anchor=anchor, after=after))


def ticks_after(
    *,
    cron: str = "",
    interval_seconds: int | None = None,
    tz: str = "UTC",
    anchor: datetime | None = None,
    after: datetime,
) -> Iterator[datetime]:
    """The ticks strictly after `after`, in order, without end (UTC)."""
    if interval_seconds:
        if anchor is None:
            raise ValueError("an interval schedule's ticks need an anchor tick")
        # In UTC: arithmetic on datetimes of a zone with DST would count wall-clock time.
        anchor, after = anchor.astimezone(UTC), after.astimezone(UTC)
        step = timedelta(seconds=interval_seconds)
        k = (after - anchor) // step + 1
        tick = anchor + k * step
        while tick <= after:  # timedelta floor division is exact; this is only a guard
            tick += step
        while True:
            yield tick
            tick += step
    local = after.astimezone(zone(tz))
    last = after
    for tick in CronSim(expand_cron(cron), local):
        utc = tick.astimezone(UTC)
        # In a repeated (fall-back) hour, cronsim counts fixed local times from wall-clock time:
        # keep the ticks moving forward in real time.
        if utc > last:
            last = utc
            yield utc


def ticks_between(
    *,
    cron: str = "",
    interval_seconds: int | None = None,
    tz: str = "UTC",
    anchor: datetime | None = None,
    start: datetime,
    end: datetime,
) -> Iterator[datetime]:
    """The ticks t with start <= t <= end, in order (UTC)."""
    for tick in ticks_after(
        cron=cron, interval_seconds=interval_seconds, tz=tz, anchor=anchor, after=start - timedelta(microseconds=1)
    ):
        if tick > end:
            return
        yield tick


def count_interval_ticks(*, interval_seconds: int, anchor: datetime, start: datetime, end: datetime) -> int:
    """How many interval ticks fall in [start, end], without listing them."""
    if end < start:
        return 0
    anchor, start, end = anchor.astimezone(UTC), start.astimezone(UTC), end.astimezone(UTC)
    step = timedelta(seconds=interval_seconds)
    first = -((anchor - start) // step)  # ceil((start - anchor) / step)
    last = (end - anchor) // step
    return max(0, last - first + 1)
