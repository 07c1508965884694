"""Schedules on a real PostgreSQL, with a test clock (`now=`): validation, firing, the missed-run
and overlap policies, pause and resume, run now, and the schedules declared in code."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import override_settings

from jobs import registry, selectors, services
from jobs.exceptions import InvalidPayload, InvalidSubmission
from jobs.models import Job, Schedule, ScheduleRun
from jobs.services.schedules import ScheduleReadOnly
from jobs.states import Status

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def make(name="every-minute", *, now=T0, **fields):
    fields = {"job_type": "noop", "cron": "* * * * *", **fields}
    if "interval_seconds" in fields:
        fields["cron"] = ""
    return services.schedule_create(name=name, now=now, **fields)


def runs(schedule, outcome=None):
    rows = ScheduleRun.objects.filter(schedule=schedule).order_by("tick_at")
    if outcome:
        rows = rows.filter(outcome=outcome)
    return list(rows)


def ticks(schedule, outcome=None):
    return [run.tick_at for run in runs(schedule, outcome)]


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


# Validation


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "@fortnightly"}, "cron"),
        ({"cron": "", "interval_seconds": None}, "cron"),
        ({"cron": "* * * * *", "interval_seconds": 60}, "cron"),
        ({"cron": "", "interval_seconds": 0}, "interval_seconds"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"job_type": "no.such.type"}, "job_type"),
        ({"priority": "urgent"}, "priority"),
        ({"max_retries": 10_000}, "max_retries"),
        ({"missed": "all"}, "missed"),
        ({"missed": "all_within"}, "catch_up_seconds"),
        ({"missed": "all_within", "catch_up_seconds": 0}, "catch_up_seconds"),
        ({"overlap": "queue"}, "overlap"),
        ({"source": "yaml"}, "source"),
        ({"payload": [1, 2]}, "payload"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields, field):
    with pytest.raises(InvalidSubmission) as caught:
        services.schedule_create(name="bad", **{"job_type": "noop", "cron": "* * * * *", **fields})

    assert caught.value.field == field
    assert not Schedule.objects.exists()


def test_the_payload_is_checked_by_the_types_validator():
    with pytest.raises(InvalidPayload) as caught:
        services.schedule_create(name="mail", job_type="email", cron="@daily", payload={"to": "not an address"})

    assert caught.value.field == "payload"


def test_a_name_is_unique():
    make("nightly")

    with pytest.raises(InvalidSubmission) as caught:
        make("nightly")

    assert caught.value.field == "name"


def test_a_new_schedule_starts_at_its_first_tick_after_now():
    cron = make("cron", now=T0 + timedelta(seconds=20))
    interval = make("interval", interval_seconds=10, now=T0 + timedelta(seconds=3.25))

    assert cron.next_tick_at == minute(1)
    assert interval.next_tick_at == T0 + timedelta(seconds=13)


# Firing


def test_a_due_tick_becomes_one_ordinary_job_linked_to_its_run():
    schedule = make(payload={"n": 1}, priority="high", max_retries=5)

    fired = services.schedules_fire_due(now=minute(1) + timedelta(seconds=0.2))
    again = services.schedules_fire_due(now=minute(1) + timedelta(seconds=0.4))

    assert (fired, again) == (1, 0)
    [run] = runs(schedule)
    job = run.job
    assert (run.tick_at, run.outcome, run.lateness_seconds) == (minute(1), "fired", pytest.approx(0.2))
    assert (job.type, job.payload, job.priority, job.max_retries, job.status) == (
        "noop",
        {"n": 1},
        "high",
        5,
        Status.QUEUED,
    )
    assert job.schedule_run == run
    schedule.refresh_from_db()
    assert (schedule.next_tick_at, schedule.last_tick_at) == (minute(2), minute(1))


def test_nothing_fires_before_its_tick_nor_while_paused():
    schedule = make()

    assert services.schedules_fire_due(now=minute(1) - timedelta(microseconds=1)) == 0
    services.schedule_pause(schedule=schedule)
    assert services.schedules_fire_due(now=minute(1)) == 0
    assert not Job.objects.exists()


def test_a_job_type_default_applies_when_the_schedule_gives_no_max_retries():
    make(job_type="test.flaky")

    services.schedules_fire_due(now=minute(1))

    assert Job.objects.get().max_retries == registry.get("test.flaky").max_retries


def test_a_daily_0230_in_berlin_fires_the_expected_local_times_across_both_dst_changes():
    # A test clock that moves from tick to tick, 0.3 s after each, for the spring and autumn weeks.
    fired = []
    for start in (datetime(2026, 3, 27, 12, tzinfo=BERLIN), datetime(2026, 10, 23, 12, tzinfo=BERLIN)):
        Schedule.objects.all().delete()
        schedule = make("berlin", cron="30 2 * * *", timezone="Europe/Berlin", now=start)
        for _ in range(4):
            schedule.refresh_from_db()
            assert services.schedules_fire_due(now=schedule.next_tick_at + timedelta(seconds=0.3)) == 1
        fired += [tick.astimezone(BERLIN).isoformat() for tick in ticks(schedule, "fired")]

    assert fired == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: once, at the first minute after the gap
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # 02:30 happens twice: once, the first time
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_every_30_minutes_in_berlin_across_the_autumn_change_fires_every_real_half_hour():
    schedule = make(
        "half-hourly", cron="*/30 * * * *", timezone="Europe/Berlin", now=datetime(2026, 10, 25, 0, 5, tzinfo=UTC)
    )
    for _ in range(5):
        schedule.refresh_from_db()
        services.schedules_fire_due(now=schedule.next_tick_at + timedelta(seconds=0.1))

    assert [t.astimezone(BERLIN).isoformat() for t in ticks(schedule)] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


def test_interval_ticks_do_not_drift_when_fired_late():
    schedule = make("ten-seconds", interval_seconds=10, now=T0)
    # Fired 0.9 s late each time: the grid stays at :10, :20, :30.
    for n in (1, 2, 3):
        services.schedules_fire_due(now=T0 + timedelta(seconds=10 * n + 0.9))

    assert ticks(schedule) == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    schedule.refresh_from_db()
    assert schedule.next_tick_at == T0 + timedelta(seconds=40)


# Missed runs: every mover was down from minute 1 to minute 10 (a tick later than the 30 s grace is missed)


def test_missed_skip_fires_only_the_latest_missed_tick_and_records_the_others():
    schedule = make(missed="skip")

    assert services.schedules_fire_due(now=minute(10) + timedelta(seconds=45)) == 1

    assert ticks(schedule, "fired") == [minute(10)]
    assert ticks(schedule, "missed") == [minute(n) for n in range(1, 10)]
    schedule.refresh_from_db()
    assert schedule.next_tick_at == minute(11)


def test_missed_skip_with_an_on_time_tick_fires_just_that_one():
    schedule = make(missed="skip")

    services.schedules_fire_due(now=minute(10) + timedelta(seconds=5))

    assert ticks(schedule, "fired") == [minute(10)]
    assert ticks(schedule, "missed") == [minute(n) for n in range(1, 10)]


def test_missed_all_within_fires_the_ticks_of_the_catch_up_window_and_records_older_ones():
    schedule = make(missed="all_within", catch_up_seconds=180)

    assert services.schedules_fire_due(now=minute(10) + timedelta(seconds=45)) == 3

    assert ticks(schedule, "fired") == [minute(8), minute(9), minute(10)]
    assert ticks(schedule, "missed") == [minute(n) for n in range(1, 8)]


def test_missed_none_fires_no_missed_tick():
    schedule = make(missed="none")

    assert services.schedules_fire_due(now=minute(10) + timedelta(seconds=45)) == 0

    assert ticks(schedule, "missed") == [minute(n) for n in range(1, 11)]
    schedule.refresh_from_db()
    assert schedule.next_tick_at == minute(11)
    assert services.schedules_fire_due(now=minute(11) + timedelta(seconds=1)) == 1


@override_settings(JOB_SCHEDULE_MAX_MISSED_ROWS=5)
def test_a_long_outage_records_a_bounded_number_of_missed_ticks():
    per_minute = make("per-minute", missed="skip")
    per_second = make("per-second", interval_seconds=1, missed="none")
    three_days = minute(3 * 24 * 60) + timedelta(seconds=40)

    services.schedules_fire_due(now=three_days)

    assert ticks(per_minute, "fired") == [minute(3 * 24 * 60)]
    assert ticks(per_minute, "missed") == [minute(3 * 24 * 60 - n) for n in range(5, 0, -1)]
    assert len(runs(per_second, "missed")) == 5
    per_second.refresh_from_db()
    assert per_second.next_tick_at > three_days


# Overlap


def test_overlap_skip_skips_a_tick_while_the_previous_run_has_not_finished():
    schedule = make(overlap="skip")
    services.schedules_fire_due(now=minute(1))
    services.schedules_fire_due(now=minute(2))  # the first job is still queued
    [first] = runs(schedule, "fired")
    services.job_cancel(job_id=first.job_id)  # cancelled: finished
    services.schedules_fire_due(now=minute(3))

    assert [(run.tick_at, run.outcome) for run in runs(schedule)] == [
        (minute(1), "fired"),
        (minute(2), "skipped_overlap"),
        (minute(3), "fired"),
    ]


def test_overlap_allow_fires_every_tick():
    schedule = make(overlap="allow")
    for n in (1, 2, 3):
        services.schedules_fire_due(now=minute(n))

    assert len(runs(schedule, "fired")) == 3


def test_overlap_skip_applies_to_the_ticks_of_a_catch_up_too():
    schedule = make(overlap="skip", missed="all_within", catch_up_seconds=600)

    assert services.schedules_fire_due(now=minute(3) + timedelta(seconds=1)) == 1

    assert [run.outcome for run in runs(schedule)] == ["fired", "skipped_overlap", "skipped_overlap"]


# Any number of movers


def test_a_tick_already_recorded_is_not_fired_again():
    schedule = make()
    # Another mover recorded the tick (the unique constraint holds, whatever next_tick_at says).
    services.schedules_fire_due(now=minute(1))
    Schedule.objects.filter(pk=schedule.pk).update(next_tick_at=minute(1))

    assert services.schedules_fire_due(now=minute(1) + timedelta(seconds=1)) == 0

    assert Job.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_tick_at == minute(2)


def test_concurrent_movers_fire_each_tick_once():
    for n in range(30):
        make(f"s{n}")
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def mover() -> None:
        barrier.wait()
        try:
            counts.append(services.schedules_fire_due(now=minute(1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=mover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == 30
    assert Job.objects.count() == 30 == ScheduleRun.objects.filter(outcome="fired").count()


def test_a_schedule_whose_type_is_gone_records_its_tick_as_missed_and_moves_on():
    schedule = make()
    Schedule.objects.filter(pk=schedule.pk).update(job_type="gone.type")

    assert services.schedules_fire_due(now=minute(1)) == 0

    assert ticks(schedule, "missed") == [minute(1)]
    schedule.refresh_from_db()
    assert schedule.next_tick_at == minute(2)


# Pause, resume, run now, update, delete


def test_resume_starts_from_now_without_a_burst_of_catch_up():
    schedule = make(missed="all_within", catch_up_seconds=3600)
    services.schedule_pause(schedule=schedule)

    services.schedule_resume(schedule=schedule, now=minute(30) + timedelta(seconds=10))

    assert schedule.next_tick_at == minute(31)
    assert services.schedules_fire_due(now=minute(31)) == 1
    assert ticks(schedule) == [minute(31)]


def test_resume_keeps_an_interval_on_its_grid():
    schedule = make(interval_seconds=10, now=T0)
    services.schedule_pause(schedule=schedule)

    services.schedule_resume(schedule=schedule, now=T0 + timedelta(seconds=95))

    assert schedule.next_tick_at == T0 + timedelta(seconds=100)


def test_run_now_makes_a_job_linked_to_a_run_of_now_and_leaves_the_next_tick():
    schedule = make()
    at = T0 + timedelta(seconds=12.5)

    job = services.schedule_trigger(schedule=schedule, now=at)

    assert job.schedule_run.tick_at == at and job.schedule_run.outcome == "fired"
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED
    schedule.refresh_from_db()
    assert schedule.next_tick_at == minute(1)


def test_update_checks_like_create_and_a_new_timing_starts_from_now():
    schedule = make(now=T0)

    with pytest.raises(InvalidSubmission) as caught:
        services.schedule_update(schedule=schedule, cron="* * *")
    assert caught.value.field == "cron"

    services.schedule_update(schedule=schedule, interval_seconds=300, now=T0 + timedelta(seconds=7))
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.interval_seconds) == ("", 300)
    assert schedule.next_tick_at == T0 + timedelta(seconds=307)

    services.schedule_update(schedule=schedule, payload={"x": 1}, now=T0 + timedelta(seconds=100))
    schedule.refresh_from_db()
    assert schedule.payload == {"x": 1} and schedule.next_tick_at == T0 + timedelta(seconds=307)


def test_an_edit_of_a_schedule_read_before_the_mover_fired_keeps_the_movers_progress():
    """The admin, the API and the CLI read the schedule, the mover fires its tick, then the edit lands."""
    schedule = make(now=T0)
    read_before = Schedule.objects.get(pk=schedule.pk)
    assert services.schedules_fire_due(now=minute(1)) == 1

    edited = services.schedule_update(schedule=read_before, payload={"x": 1}, now=minute(1))

    schedule.refresh_from_db()
    assert (schedule.payload, schedule.next_tick_at, schedule.last_tick_at) == ({"x": 1}, minute(2), minute(1))
    assert (edited.next_tick_at, edited.last_tick_at) == (minute(2), minute(1))
    assert services.schedules_fire_due(now=minute(1)) == 0
    assert ticks(schedule) == [minute(1)]


def test_code_defined_schedules_can_only_be_paused_and_resumed():
    schedule = make(source="code")

    with pytest.raises(ScheduleReadOnly):
        services.schedule_update(schedule=schedule, cron="@hourly")
    with pytest.raises(ScheduleReadOnly):
        services.schedule_delete(schedule=schedule)
    services.schedule_update(schedule=schedule, enabled=False)

    assert Schedule.objects.get().enabled is False


def test_delete_keeps_the_jobs_it_made():
    schedule = make()
    services.schedules_fire_due(now=minute(1))

    services.schedule_delete(schedule=schedule)

    assert not Schedule.objects.exists() and not ScheduleRun.objects.exists()
    assert Job.objects.count() == 1


# Declared in code


@pytest.fixture
def declared():
    names = []

    def declare(name, **fields):
        registry._schedules.pop(name, None)
        names.append(name)
        return registry.schedule(name, **{"job_type": "noop", **fields})

    yield declare
    for name in names:
        registry._schedules.pop(name, None)


def test_a_name_that_is_not_one_url_segment_is_refused_where_it_is_declared(declared):
    for name in ("team/nightly", "", "-x", "n" * 101):
        with pytest.raises(ValueError, match="schedule name"):
            declared(name, cron="@daily")
    assert "team/nightly" not in registry.declared_schedules()


def test_sync_creates_updates_and_removes_code_defined_schedules(declared):
    declared("nightly", cron="0 3 * * *", timezone="Europe/Berlin")
    declared("often", interval_seconds=60)
    make("by-hand")

    first = services.schedules_sync_code(now=T0)
    assert (sorted(first.created), first.updated, first.removed) == (["nightly", "often"], [], [])
    nightly = Schedule.objects.get(name="nightly")
    assert (nightly.source, nightly.next_tick_at) == ("code", datetime(2026, 6, 2, 1, 0, tzinfo=UTC))

    # An operator pauses it; a deploy changes its time and drops "often".
    services.schedule_pause(schedule=nightly)
    registry._schedules.pop("nightly", None)
    registry._schedules.pop("often", None)
    declared("nightly", cron="0 4 * * *", timezone="Europe/Berlin")
    second = services.schedules_sync_code(now=T0)

    assert (second.created, second.updated, second.removed) == ([], ["nightly"], ["often"])
    nightly.refresh_from_db()
    assert (nightly.cron, nightly.enabled) == ("0 4 * * *", False)
    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["by-hand", "nightly"]
    assert not services.schedules_sync_code(now=T0).changed


def test_sync_leaves_a_run_time_schedule_of_the_same_name_alone(declared):
    make("report")
    declared("report", cron="@daily")

    result = services.schedules_sync_code(now=T0)

    assert result.conflicts == ["report"]
    assert Schedule.objects.get().source == "runtime"


def test_a_declaration_that_is_not_valid_is_refused_naming_schedule_and_field(declared):
    declared("broken", cron="0 3 * *")

    with pytest.raises(InvalidSubmission) as caught:
        services.schedules_sync_code(now=T0)

    assert caught.value.field == "cron" and "'broken'" in caught.value.message


# Reads


def test_the_overview_shows_the_last_run_and_its_jobs_status():
    schedule = make()
    idle = make("idle", cron="@yearly")
    services.schedules_fire_due(now=minute(1))

    rows = {row.name: row for row in selectors.schedules_overview()}

    assert (rows[schedule.name].last_run_outcome, rows[schedule.name].last_run_job_status) == ("fired", "queued")
    assert rows[idle.name].last_run_outcome is None
    assert [run.tick_at for run in selectors.schedule_runs(schedule=schedule)] == [minute(1)]
    assert selectors.next_schedule_tick_at() == minute(2)


def test_a_schedule_whose_ticks_cannot_be_computed_does_not_hold_up_the_others():
    broken, fine = make("broken"), make("fine")
    Schedule.objects.filter(pk=broken.pk).update(timezone="Nowhere/Land")

    assert services.schedules_fire_due(now=minute(1)) == 1

    assert ticks(fine) == [minute(1)] and ticks(broken) == []
    broken.refresh_from_db()
    assert broken.next_tick_at == minute(2)


def test_sync_treats_a_schedule_created_meanwhile_by_another_mover_as_created(declared):
    from jobs.services.schedules import _create_declared

    declared("nightly", cron="0 3 * * *")
    services.schedules_sync_code(now=T0)

    assert _create_declared("nightly", {"job_type": "noop", "cron": "0 3 * * *"}, now=T0) is False
    assert Schedule.objects.filter(name="nightly").count() == 1


def test_ticks_are_counted_by_type_with_their_lateness_and_the_missed_by_reason():
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("jobs_schedule_ticks_total", type="test.sleep"),
        value("jobs_schedule_ticks_missed_total", type="test.sleep", reason="missed"),
        value("jobs_schedule_ticks_missed_total", type="test.sleep", reason="skipped_overlap"),
        value("job_schedule_lateness_seconds_count", type="test.sleep"),
        value("job_schedule_lateness_seconds_sum", type="test.sleep"),
    )
    make(job_type="test.sleep", missed="skip", overlap="skip")

    services.schedules_fire_due(now=minute(5) + timedelta(seconds=40))  # 4 missed, the 5th fires 40 s late
    services.schedules_fire_due(now=minute(6))  # the first job has not run: skipped

    after = (
        value("jobs_schedule_ticks_total", type="test.sleep"),
        value("jobs_schedule_ticks_missed_total", type="test.sleep", reason="missed"),
        value("jobs_schedule_ticks_missed_total", type="test.sleep", reason="skipped_overlap"),
        value("job_schedule_lateness_seconds_count", type="test.sleep"),
        value("job_schedule_lateness_seconds_sum", type="test.sleep"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 4, 1, 1, pytest.approx(40.0)]
