"""`manage.py jobs schedules ...` against real PostgreSQL and Redis: every subcommand, and bad input."""

import os
import pty
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, Schedule, ScheduleRun
from tests import servers as test_services

from .test_cli import cli, jobs, jobs_json


def schedule(name: str = "nightly", **fields) -> Schedule:
    return services.schedule_create(**{"name": name, "job_type": "noop", "cron": "0 3 * * *", **fields})


def test_create_prints_the_schedule_with_its_next_run():
    out = jobs_json(
        "schedules",
        "create",
        "nightly",
        "--type",
        "email_welcome",
        "--payload",
        '{"email": "a@example.com"}',
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--missed",
        "all_within",
        "--catch-up",
        "3600",
        "--overlap",
        "skip",
        "--priority",
        "low",
    )

    assert (out["name"], out["job_type"], out["cron"], out["timezone"]) == (
        "nightly",
        "email_welcome",
        "0 3 * * *",
        "Europe/Berlin",
    )
    assert (out["missed"], out["catch_up_seconds"], out["overlap"], out["priority"]) == (
        "all_within",
        3600,
        "skip",
        "low",
    )
    assert out["source"] == "runtime" and out["enabled"] is True and out["next_tick_at"]
    assert Schedule.objects.get().payload == {"email": "a@example.com"}


def test_create_paused_with_an_interval_and_show_it_as_text():
    jobs("schedules", "create", "often", "--type", "noop", "--every", "30", "--paused")

    text = jobs("schedules", "show", "often")

    fields = dict(line.strip().split(": ", 1) for line in text.splitlines() if ": " in line)
    assert (fields["interval_seconds"], fields["enabled"], fields["cron"], fields["last_run"]) == (
        "30",
        "False",
        "-",
        "-",
    )


def test_list_shows_every_schedule_with_its_next_and_last_run():
    busy = schedule("a-busy")
    job = services.schedule_trigger(schedule=busy)
    services.schedule_pause(schedule=schedule("b-paused", cron="", interval_seconds=90))

    text = jobs("schedules", "list")
    data = jobs_json("schedules", "list")

    header, first, second = text.splitlines()
    assert header.split()[:4] == ["NAME", "TYPE", "EVERY", "TZ"]
    assert first.split()[:6] == ["a-busy", "noop", "0", "3", "*", "*"] and "fired" in first and "queued" in first
    assert second.split()[:5] == ["b-paused", "noop", "90s", "UTC", "paused"]
    assert [row["name"] for row in data] == ["a-busy", "b-paused"]
    assert data[0]["last_run"]["job"] == str(job.pk)


def test_update_changes_only_the_options_given():
    schedule(payload={"keep": True}, priority="high")

    out = jobs_json("schedules", "update", "nightly", "--cron", "30 4 * * 1-5", "--tz", "America/New_York")

    assert (out["cron"], out["timezone"], out["payload"], out["priority"]) == (
        "30 4 * * 1-5",
        "America/New_York",
        {"keep": True},
        "high",
    )


def test_update_to_an_interval_and_back_to_the_default_retries():
    schedule(max_retries=5)

    out = jobs_json("schedules", "update", "nightly", "--every", "600", "--max-retries", "none")

    assert (out["cron"], out["interval_seconds"], out["max_retries"]) == ("", 600, None)


def test_pause_resume_and_trigger():
    nightly = schedule()
    Schedule.objects.filter(pk=nightly.pk).update(next_tick_at=timezone.now() - timedelta(days=2))

    assert jobs_json("schedules", "pause", "nightly")["enabled"] is False
    resumed = jobs_json("schedules", "resume", "nightly")
    job = jobs_json("schedules", "trigger", "nightly")

    assert resumed["enabled"] is True
    assert Schedule.objects.get().next_tick_at > timezone.now()  # resumed from now: no catch-up burst
    assert (job["type"], job["status"]) == ("noop", "queued")
    assert str(ScheduleRun.objects.get().job_id) == job["id"]


def test_runs_lists_the_ticks_newest_first_with_their_jobs():
    nightly = schedule()
    now = timezone.now()
    ScheduleRun.objects.create(schedule=nightly, tick_at=now - timedelta(days=1), outcome="missed", recorded_at=now)
    job = services.schedule_trigger(schedule=nightly)

    text = jobs("schedules", "runs", "nightly")
    data = jobs_json("schedules", "runs", "nightly", "--limit", "1")

    header, fired, missed = text.splitlines()
    assert header.split()[:3] == ["TICK", "OUTCOME", "JOB"]
    assert "fired" in fired and str(job.pk) in fired and "queued" in fired
    assert "missed" in missed and missed.split()[2] == "-"
    assert [(row["outcome"], row["job"]) for row in data] == [("fired", str(job.pk))]


def test_delete_removes_a_run_time_schedule_and_keeps_its_jobs():
    job = services.schedule_trigger(schedule=schedule())

    assert jobs("schedules", "delete", "nightly").strip() == "deleted schedule nightly"
    assert not Schedule.objects.exists() and Job.objects.filter(pk=job.pk).exists()


def test_on_a_terminal_delete_asks_first():
    schedule()

    def answered(answer: str, *args: str) -> subprocess.CompletedProcess:
        controller, terminal = pty.openpty()
        os.write(controller, answer.encode() + b"\n")
        try:
            command = [test_services.python(), "manage.py", "jobs", "schedules", "delete", "nightly", *args]
            return subprocess.run(
                command, cwd=test_services.ROOT, stdin=terminal, capture_output=True, text=True, timeout=60
            )
        finally:
            os.close(controller)
            os.close(terminal)

    refused = answered("n")
    assert refused.returncode == 1 and "Delete schedule nightly" in refused.stderr and "not deleted" in refused.stderr
    assert Schedule.objects.exists()
    assert answered("", "--yes").returncode == 0 and not Schedule.objects.exists()


BAD_INPUT = [
    (("schedules", "create", "x", "--type", "noop", "--cron", "61 * * * *"), 1, "cron"),
    (("schedules", "create", "x", "--type", "noop", "--cron", "@daily", "--tz", "Mars/Olympus"), 1, "Mars/Olympus"),
    (("schedules", "create", "x", "--type", "no.such", "--every", "60"), 1, "no.such"),
    (("schedules", "create", "x", "--type", "noop"), 1, "cron"),
    (("schedules", "create", "x", "--type", "noop", "--every", "60", "--payload", "[1]"), 1, "JSON object"),
    (("schedules", "create", "x", "--type", "noop", "--every", "60", "--payload", "{"), 1, "not valid JSON"),
    (("schedules", "create", "x", "--type", "noop", "--every", "60", "--missed", "all_within"), 1, "catch_up"),
    (("schedules", "create", "taken", "--type", "noop", "--every", "60"), 1, "exists"),
    (("schedules", "update", "taken"), 2, "give at least one field"),
    (("schedules", "update", "from-code", "--every", "5"), 1, "defined in code"),
    (("schedules", "delete", "from-code", "--yes"), 1, "defined in code"),
    (("schedules", "show", "ghost"), 3, "no schedule named 'ghost'"),
    (("schedules", "trigger", "ghost"), 3, "no schedule named 'ghost'"),
    (("schedules", "runs", "taken", "--limit", "0"), 2, "--limit must be at least 1"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=[" ".join(case[0]) for case in BAD_INPUT])
def test_bad_input_exits_non_zero_with_a_one_line_error(args, code, message):
    schedule("taken")
    schedule("from-code", source="code")

    result = cli(*args)

    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: ") and message in line, line
    assert sorted(Schedule.objects.values_list("name", "interval_seconds")) == [("from-code", None), ("taken", None)]


@pytest.mark.parametrize(
    "args",
    [
        ("schedules", "frobnicate"),
        ("schedules", "create", "x", "--every", "soon"),
        ("schedules", "create", "x", "--type", "noop", "--every", str(10**12)),
        ("schedules", "create", "x"),
    ],
    ids=["unknown subcommand", "interval not a number", "interval too large", "no type"],
)
def test_bad_arguments_are_usage_errors_without_a_traceback(args):
    result = cli(*args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("manage.py jobs schedules")
