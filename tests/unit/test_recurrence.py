"""When ticks fall: cron in a time zone across both DST changes of 2026, aliases, intervals on their grid."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.rules import recurrence
from jobs.rules.exceptions import InvalidSubmission

BERLIN = ZoneInfo("Europe/Berlin")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def ticks(cron: str, *, start: datetime, end: datetime, tz: str = "Europe/Berlin") -> list[datetime]:
    return list(recurrence.ticks_between(cron=cron, tz=tz, start=start, end=end))


def in_berlin(values: list[datetime]) -> list[str]:
    return [value.astimezone(BERLIN).isoformat() for value in values]


def test_a_daily_0230_fires_once_on_the_spring_forward_day_at_the_first_minute_after_the_gap():
    # 2026-03-29 02:00 CET the clocks jump to 03:00 CEST: 02:30 does not exist that day.
    fired = ticks("30 2 * * *", start=local(2026, 3, 27, 12), end=local(2026, 3, 31, 12))

    assert in_berlin(fired) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert all(tick.tzinfo == UTC for tick in fired)


def test_a_daily_0230_fires_once_on_the_fall_back_day_at_its_first_occurrence():
    # 2026-10-25 03:00 CEST the clocks go back to 02:00 CET: 02:30 happens twice.
    fired = ticks("30 2 * * *", start=local(2026, 10, 24, 12), end=local(2026, 10, 27, 12))

    assert in_berlin(fired) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_the_fall_back_tick_is_not_fired_again_when_counting_resumes_inside_the_repeated_hour():
    # After the first 02:30 (CEST) fired, the next look happens at 02:10 CET, in the repeated hour.
    inside_repeat = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    assert inside_repeat.utcoffset() == timedelta(hours=1)

    nxt = recurrence.next_tick(cron="30 2 * * *", tz="Europe/Berlin", after=inside_repeat)

    assert nxt.astimezone(BERLIN).isoformat() == "2026-10-26T02:30:00+01:00"


def test_every_30_minutes_keeps_real_time_across_both_changes():
    spring = ticks("*/30 * * * *", start=local(2026, 3, 29, 1, 0), end=local(2026, 3, 29, 4, 0))
    autumn = ticks("*/30 * * * *", start=datetime(2026, 10, 25, 0, 30, tzinfo=UTC), end=local(2026, 10, 25, 3, 30))

    assert in_berlin(spring) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert in_berlin(autumn) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]
    # Every gap is 30 real minutes: none lost in spring, none doubled in autumn.
    for fired in (spring, autumn):
        assert {b - a for a, b in zip(fired, fired[1:], strict=False)} == {timedelta(minutes=30)}


def test_a_cron_in_berlin_follows_local_time_and_utc_does_not():
    berlin = ticks("0 9 * * *", start=local(2026, 3, 28, 0), end=local(2026, 3, 30, 23))
    utc = ticks("0 9 * * *", tz="UTC", start=local(2026, 3, 28, 0), end=local(2026, 3, 30, 23))

    assert [t.hour for t in berlin] == [8, 7, 7]  # 09:00 CET, then 09:00 CEST
    assert [t.hour for t in utc] == [9, 9, 9]


@pytest.mark.parametrize(
    ("alias", "first"),
    [
        ("@hourly", "2026-05-06T11:00:00+00:00"),
        ("@daily", "2026-05-07T00:00:00+00:00"),
        ("@midnight", "2026-05-07T00:00:00+00:00"),
        ("@weekly", "2026-05-10T00:00:00+00:00"),  # a Sunday
        ("@monthly", "2026-06-01T00:00:00+00:00"),
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2027-01-01T00:00:00+00:00"),
        ("@HOURLY", "2026-05-06T11:00:00+00:00"),
    ],
)
def test_aliases(alias, first):
    stored = recurrence.validate_cron(alias)

    assert stored == alias.lower()
    assert recurrence.next_tick(cron=stored, after=datetime(2026, 5, 6, 10, 15, tzinfo=UTC)).isoformat() == first


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("", "five fields"),
        ("* * * *", "five fields"),
        ("0 * * * * *", "not 6"),  # seconds are not offered
        ("61 * * * *", "Bad minute"),
        ("0 25 * * *", "Bad hour"),
        ("0 0 30 2 *", "Bad day-of-month"),  # never happens
        ("0 0 * 13 *", "Bad month"),
        ("0 0 * * 8", "Bad day-of-week"),
        ("@every", "unknown cron alias"),
        ("@reboot", "unknown cron alias"),
        ("a b c d e", "not valid"),
    ],
)
def test_invalid_cron_expressions_are_refused_naming_the_field(cron, says):
    with pytest.raises(InvalidSubmission) as caught:
        recurrence.validate_cron(cron)

    assert caught.value.field == "cron"
    assert says in caught.value.message


def test_valid_expressions_are_kept_with_their_whitespace_normalised():
    assert recurrence.validate_cron("  */5   9-17 * * MON-FRI ") == "*/5 9-17 * * MON-FRI"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Europe/", "x" * 65])
def test_unknown_time_zones_are_refused_naming_the_field(name):
    with pytest.raises(InvalidSubmission) as caught:
        recurrence.zone(name)

    assert caught.value.field == "timezone"


@pytest.mark.parametrize("value", [0, -5, 1.5, "10", True, None, 2**31, 10**30])
def test_intervals_are_whole_positive_seconds(value):
    with pytest.raises(InvalidSubmission) as caught:
        recurrence.validate_interval(value)
    assert caught.value.field == "interval_seconds"


def test_interval_ticks_stay_on_the_grid_of_the_first_tick_however_late_they_are_asked_for():
    created = datetime(2026, 1, 1, 12, 0, 0, 750000, tzinfo=UTC)
    first = recurrence.first_interval_tick(interval_seconds=10, now=created)
    assert first == datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)

    # A mover that looks 3.4 s late, or 47 s late, finds the next tick on the same grid: no drift.
    late = recurrence.next_tick(interval_seconds=10, anchor=first, after=first + timedelta(seconds=3.4))
    later = recurrence.next_tick(interval_seconds=10, anchor=first, after=first + timedelta(seconds=47))
    exact = recurrence.next_tick(interval_seconds=10, anchor=first, after=first + timedelta(seconds=10))

    assert late == first + timedelta(seconds=10)
    assert later == first + timedelta(seconds=50)
    assert exact == first + timedelta(seconds=20)  # strictly after


def test_interval_ticks_ignore_dst_they_are_real_seconds():
    anchor = local(2026, 3, 29, 1, 0)
    fired = list(
        recurrence.ticks_between(
            interval_seconds=3600, tz="Europe/Berlin", anchor=anchor, start=anchor, end=local(2026, 3, 29, 5, 0)
        )
    )

    assert in_berlin(fired) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]


def test_interval_ticks_are_counted_without_listing_them():
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    start, end = anchor + timedelta(seconds=5), anchor + timedelta(days=30)
    listed = list(recurrence.ticks_between(interval_seconds=7, anchor=anchor, start=start, end=end))

    assert recurrence.count_interval_ticks(interval_seconds=7, anchor=anchor, start=start, end=end) == len(listed)
    assert recurrence.count_interval_ticks(interval_seconds=7, anchor=anchor, start=end, end=start) == 0
