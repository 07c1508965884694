"""`manage.py jobs --as USER`: the CLI asks its actor for the permissions the admin and the
management API ask, and writes each change to the admin's history under the actor's name."""

import io
import json

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.test import override_settings

from jobs import services
from jobs.management.commands.jobs import NEEDS, READS
from jobs.models import Job, JobLimit, Schedule

from .test_cli import cli, dead, submit

VIEW_ONLY = ("view_job", "view_queuestate")


def jobs(*args: str) -> str:
    out = io.StringIO()
    call_command("jobs", *args, stdout=out)
    return out.getvalue()


def refusal(*args: str) -> CommandError:
    with pytest.raises(CommandError) as refused:
        jobs(*args)
    return refused.value


def _paused(queue: str) -> str:
    services.queue_pause(queue=queue, by="test")
    return queue


def _limited(type: str) -> str:
    services.limit_set(type=type, concurrency=3, by="test")
    return type


def _schedule(name: str, *, enabled: bool = True) -> str:
    services.schedule_create(name=name, job_type="noop", interval_seconds=60, enabled=enabled)
    return name


# Each subcommand that changes something, with a function that prepares a job or queue of its
# own for it and returns the arguments (called just before the command runs).
WRITES = {
    "submit": lambda: ["submit", "noop"],
    "retry": lambda: ["retry", str(dead().pk)],
    "retry --all-dead": lambda: (dead(), ["retry", "--all-dead"])[1],
    "resubmit": lambda: ["resubmit", str(dead().pk)],
    "run-now": lambda: ["run-now", str(submit(delay=3600).pk)],
    "cancel": lambda: ["cancel", str(submit(delay=3600).pk)],
    "delete": lambda: ["delete", str(dead().pk)],
    "purge": lambda: (dead(), ["purge"])[1],
    "pause": lambda: ["pause", "low"],
    "resume": lambda: ["resume", _paused("medium")],
    "schedules create": lambda: ["schedules", "create", "made", "--type", "noop", "--every", "60"],
    "schedules update": lambda: ["schedules", "update", _schedule("changed"), "--every", "120"],
    "schedules pause": lambda: ["schedules", "pause", _schedule("paused")],
    "schedules resume": lambda: ["schedules", "resume", _schedule("resumed", enabled=False)],
    "schedules trigger": lambda: ["schedules", "trigger", _schedule("triggered")],
    "schedules delete": lambda: ["schedules", "delete", _schedule("deleted")],
    "limits set": lambda: ["limits", "set", "noop", "--concurrency", "2"],
    "limits clear": lambda: ["limits", "clear", _limited("noop")],
}


def _subcommand(args: list[str]) -> str:
    """`retry`, or `schedules create`, `limits set`: what the refusal names."""
    return " ".join(args[:2]) if args[0] in ("schedules", "limits") else args[0]


def test_the_writes_tested_are_every_write_the_cli_has():
    # `demo` submits as `submit` does, with the demonstration types (tests/e2e/test_dev_stack.py).
    assert {_subcommand(name.split()) for name in WRITES} == set(NEEDS) - READS - {"demo"}


def test_a_view_only_actor_can_read_but_every_cli_write_is_refused_and_changes_nothing(make_user, broker):
    make_user("viewer", staff=True, perms=VIEW_ONLY)
    assert "STATUS" in jobs("--as", "viewer", "stats")
    assert "STARTS IN WINDOW" in jobs("--as", "viewer", "limits", "list")

    for name, prepare in WRITES.items():
        if name == "submit":
            continue  # any active user may submit, as through the API
        args = prepare()
        jobs_before = sorted(Job.objects.values_list("pk", "status"))
        schedules_before = sorted(Schedule.objects.values_list("name", "enabled", "interval_seconds"))
        limits_before = sorted(JobLimit.objects.values_list("type", "concurrency", "rate"))
        error = refusal("--as", "viewer", *args)
        assert error.returncode == 1, name
        assert f"user 'viewer' may not run `jobs {_subcommand(args)}`" in str(error) and "jobs." in str(error), name
        assert sorted(Job.objects.values_list("pk", "status")) == jobs_before, name
        assert sorted(Schedule.objects.values_list("name", "enabled", "interval_seconds")) == schedules_before, name
        assert sorted(JobLimit.objects.values_list("type", "concurrency", "rate")) == limits_before, name
    assert LogEntry.objects.count() == 0


def test_an_actor_with_the_permissions_succeeds_and_each_change_is_in_the_history_under_its_name(make_user, broker):
    operator, _ = make_user("operator", staff=True)

    for name, prepare in WRITES.items():
        args = prepare()
        before = LogEntry.objects.count()
        jobs(*args[:1], "--as", "operator", *args[1:])  # --as after the subcommand works too
        entries = list(LogEntry.objects.order_by("pk")[before:])
        if name == "submit":
            assert entries == []  # a submission is the job's own first line of history
            assert Job.objects.filter(type="noop", owner=operator).exists()
            continue
        assert entries and {entry.user.username for entry in entries} == {"operator"}, name
        assert all(entry.get_change_message().endswith("from the CLI") for entry in entries), name


def test_an_unknown_or_inactive_actor_is_refused(make_user, broker):
    user, _ = make_user("gone", staff=True)
    user.is_active = False
    user.save()

    assert refusal("--as", "nobody", "stats").returncode == 3
    assert "no user named 'nobody'" in str(refusal("--as", "nobody", "stats"))
    assert refusal("--as", "gone", "pause", "low").returncode == 1


def test_with_an_actor_required_a_change_without_one_is_refused_but_reading_is_not(broker):
    job = submit(delay=3600)
    with override_settings(JOB_CLI_REQUIRE_ACTOR=True):
        error = refusal("cancel", str(job.pk))
        assert "--as USER" in str(error) and error.returncode == 1
        assert "STATUS" in jobs("stats")
    assert Job.objects.get(pk=job.pk).status == "scheduled"


def test_the_actor_comes_from_the_environment_and_a_refusal_is_exit_code_1(make_user, broker):
    make_user("viewer", staff=True, perms=VIEW_ONLY)
    job = submit(delay=3600)

    refused = cli("cancel", str(job.pk), env={"JOB_CLI_USER": "viewer"})

    assert refused.returncode == 1, refused.stderr
    assert "may not run `jobs cancel`" in refused.stderr and "jobs.change_job" in refused.stderr
    assert Job.objects.get(pk=job.pk).status == "scheduled"


def test_submitting_in_another_users_name_needs_the_permission_and_is_in_the_history(make_user, broker):
    alice, _ = make_user("alice")
    make_user("plain")
    make_user("operator", staff=True, perms=("view_job", "change_job", "delete_job"))
    make_user("delegate", staff=True, perms=("submit_for_others",))

    for actor in ("plain", "operator"):
        error = refusal("--as", actor, "submit", "noop", "--owner", "alice")
        assert error.returncode == 1 and "jobs.submit_for_others" in str(error), actor
    assert not Job.objects.exists() and LogEntry.objects.count() == 0
    jobs("--as", "plain", "submit", "noop", "--owner", "plain")  # one's own name needs nothing
    submitted = json.loads(jobs("--as", "delegate", "--json", "submit", "noop", "--owner", "alice"))

    assert Job.objects.get(pk=submitted["id"]).owner == alice
    [entry] = LogEntry.objects.all()
    assert (entry.user.username, entry.object_id) == ("delegate", submitted["id"])
    assert entry.get_change_message() == "Submitted in alice's name from the CLI" and entry.is_addition()
