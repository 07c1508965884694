"""Schedules fired by real `manage.py run_mover` processes on a real PostgreSQL.

Two scenarios run side by side, each on its own database of the same PostgreSQL, so that the
module costs one outage's length rather than both scenarios' in turn:

1. three movers for 3 minutes over 200 schedules firing every minute and five every 10 s:
   every tick fired exactly once, lateness p99 under 1 s (printed);
2. every mover stopped for 5 minutes, then two started: each missed-run policy does what it says.

No worker is started: firing makes queued jobs, which is all these tests look at.
"""

import json
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from jobs import services
from jobs.models import Job, Schedule, ScheduleRun
from jobs.rules import recurrence
from tests import servers
from tests.conftest import SERVERS

MINUTELY = 200
EVERY_10S = 5
RUN_FOR = 180.0  # seconds of three movers (acceptance 1)
OUTAGE = 300.0  # seconds with no mover (acceptance 2)
MISSED_DB = "jobqueue_missed"
# Movers without their metrics port (several on one machine) and with the default grace.
MOVER_ENV = {"JOB_MOVER_METRICS_PORT": "0"}
GRACE = settings.JOB_SCHEDULE_GRACE_SECONDS
CATCH_UP = 150


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@pytest.fixture
def missed_db():
    """A second database of the test PostgreSQL, migrated, as the Django alias `missed`; dropped after."""
    if not SERVERS["postgres"].url.startswith("postgres"):
        pytest.skip("needs the PostgreSQL of the tests")
    server = SERVERS["postgres"]
    admin = f"postgresql://{server.user}@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{MISSED_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{MISSED_DB}"')
    url = f"postgres://{server.user}@127.0.0.1:{server.port}/{MISSED_DB}"
    env = {**os.environ, "DATABASE_URL": url}
    migrated = subprocess.run(
        [servers.python(), "manage.py", "migrate", "-v0"], cwd=servers.ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    connections.settings["missed"] = {**connections.settings["default"], "NAME": MISSED_DB}
    try:
        yield env
    finally:
        connections["missed"].close()
        del connections["missed"]
        del connections.settings["missed"]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{MISSED_DB}" WITH (FORCE)')


CREATE_POLICIES = f"""
import json
from jobs import services
common = dict(job_type="noop", cron="* * * * *")
made = [
    services.schedule_create(name="skip", missed="skip", **common),
    services.schedule_create(name="all_within", missed="all_within", catch_up_seconds={CATCH_UP}, **common),
    services.schedule_create(name="none", missed="none", **common),
    services.schedule_create(name="skip-10s", job_type="noop", interval_seconds=10, missed="skip"),
]
print(json.dumps({{s.name: s.next_tick_at.isoformat() for s in made}}))
"""


def start_outage(env: dict) -> dict[str, datetime]:
    """Create the policy schedules in the second database, with no mover running: their first ticks."""
    made = subprocess.run(
        [servers.python(), "manage.py", "shell", "-c", CREATE_POLICIES],
        cwd=servers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return {name: datetime.fromisoformat(at) for name, at in json.loads(made.stdout.strip().splitlines()[-1]).items()}


def expected_ticks(schedule: Schedule, first: datetime, end: datetime) -> list[datetime]:
    return list(
        recurrence.ticks_between(
            cron=schedule.cron,
            interval_seconds=schedule.interval_seconds,
            tz=schedule.timezone,
            anchor=first,
            start=first,
            end=end,
        )
    )


@pytest.mark.timeout(600)
def test_movers_fire_every_tick_once_on_time_and_apply_the_missed_run_policies(start_mover, missed_db):
    # Scenario 2 begins: the policy schedules exist, and no mover runs on their database.
    outage_from = datetime.now(UTC)
    policy_first = start_outage(missed_db)

    # Scenario 1: three movers, then 200 schedules every minute and five every 10 s.
    movers = [start_mover(f"sched-mover-{n}", env=MOVER_ENV) for n in range(3)]
    first: dict[int, datetime] = {}
    for n in range(MINUTELY):
        schedule = services.schedule_create(name=f"minutely-{n}", job_type="noop", cron="* * * * *")
        first[schedule.pk] = schedule.next_tick_at
    for n in range(EVERY_10S):
        schedule = services.schedule_create(name=f"every-10s-{n}", job_type="noop", interval_seconds=10)
        first[schedule.pk] = schedule.next_tick_at
    time.sleep(RUN_FOR)
    stopped_at = datetime.now(UTC)
    for mover in movers:
        mover.stop()
        assert "Traceback" not in mover.log_path.read_text(), mover.log_path.read_text()[-3000:]

    # Every tick up to 2 s before the stop fired exactly once (a tick in the last 2 s may or may not have).
    settled = stopped_at - timedelta(seconds=2)
    problems = []
    expected_total = 0
    for schedule in Schedule.objects.all():
        expected = expected_ticks(schedule, first[schedule.pk], settled)
        expected_total += len(expected)
        fired = list(
            ScheduleRun.objects.filter(schedule=schedule, tick_at__lte=settled)
            .order_by("tick_at")
            .values_list("tick_at", "outcome")
        )
        if fired != [(tick, "fired") for tick in expected]:
            problems.append((schedule.name, expected, fired))
    assert not problems, problems[:3]
    runs = ScheduleRun.objects.all()
    # One job per fired run and no job without one: no tick fired twice.
    assert Job.objects.count() == runs.count() == runs.filter(outcome="fired", job__isnull=False).count()
    assert expected_total >= MINUTELY * 2 + EVERY_10S * 15
    lateness = [(created - tick).total_seconds() for created, tick in runs.values_list("job__created_at", "tick_at")]
    recorded = list(runs.values_list("lateness_seconds", flat=True))
    p50, p99, worst = percentile(lateness, 0.5), percentile(lateness, 0.99), max(lateness)
    print(
        f"\n{len(lateness)} ticks fired by 3 movers: lateness (job stored - tick) p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms; as recorded by the movers p50 "
        f"{statistics.median(recorded) * 1000:.0f} ms"
    )
    assert p99 < 1.0

    # Scenario 2 goes on: once 5 minutes passed with no mover, two start, away from a minute's edges.
    while datetime.now(UTC) < outage_from + timedelta(seconds=OUTAGE) or not 35 <= datetime.now(UTC).second < 50:
        time.sleep(0.5)
    env = {**missed_db, **MOVER_ENV}
    back = [start_mover(f"sched-mover-missed-{n}", env=env) for n in range(2)]
    missed = Schedule.objects.using("missed")
    servers.wait_for(
        lambda: missed.filter(next_tick_at__gt=datetime.now(UTC) - timedelta(seconds=5)).count() == 4,
        timeout=30,
        what="the movers to handle the missed ticks",
    )
    for mover in back:
        mover.stop()

    outcomes = {}
    for schedule in missed:
        rows = list(ScheduleRun.objects.using("missed").filter(schedule=schedule).order_by("tick_at"))
        # The ticks the movers found when they came back, all handled in that first round.
        round_at = min(row.recorded_at for row in rows)
        handled = [row for row in rows if row.recorded_at == round_at]
        ticks = expected_ticks(schedule, policy_first[schedule.name], round_at)
        assert [row.tick_at for row in handled] == ticks, schedule.name
        outcomes[schedule.name] = (ticks, {row.tick_at: row.outcome for row in handled}, round_at)
        jobs = Job.objects.using("missed").filter(schedule_run__schedule=schedule, schedule_run__recorded_at=round_at)
        assert jobs.count() == sum(row.outcome == "fired" for row in handled)

    def fired(name: str) -> list[datetime]:
        return [tick for tick, outcome in outcomes[name][1].items() if outcome == "fired"]

    def recorded_missed(name: str) -> list[datetime]:
        return [tick for tick, outcome in outcomes[name][1].items() if outcome == "missed"]

    for name in ("skip", "all_within", "none", "skip-10s"):
        ticks, _, round_at = outcomes[name]
        assert len(ticks) >= 4, (name, ticks)  # minutes of outage, each a tick
        on_time = [tick for tick in ticks if tick >= round_at - timedelta(seconds=GRACE)]
        window = [tick for tick in ticks if tick >= round_at - timedelta(seconds=CATCH_UP)]
        if name in ("skip", "skip-10s"):
            # The ticks still within the grace fire; if none is, the latest missed one does.
            assert fired(name) == (on_time or [ticks[-1]]), name
        elif name == "all_within":
            assert fired(name) == window and len(window) >= 2
        else:
            assert fired(name) == on_time == [], name  # the round is 35-50 s after a minute: no tick on time
        assert recorded_missed(name) == [tick for tick in ticks if tick not in fired(name)], name
    print(
        "after a 5-minute outage: "
        + "; ".join(f"{name}: {len(fired(name))} fired, {len(recorded_missed(name))} missed" for name in outcomes)
    )
