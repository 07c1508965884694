"""`manage.py jobs schedules ...`: recurring jobs from a shell, through the schedule services.

A mixin of the `jobs` command: the same --json, --as, exit codes and one-line errors."""

import argparse
import copy
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from jobs import services
from jobs.api.serializers import LARGEST_SECONDS, ScheduleRunSerializer, ScheduleSerializer
from jobs.formatting import age, plain, table
from jobs.models import MissedPolicy, OverlapPolicy
from jobs.rules.permissions import ADD_SCHEDULES, CHANGE_SCHEDULES, DELETE_SCHEDULES, VIEW_SCHEDULES, may_view_every_job
from jobs.rules.states import Priority
from jobs.services import history, selectors

# What the actor needs for each `schedules` subcommand, as the management API asks.
SCHEDULE_NEEDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("schedules list", "schedules show", "schedules runs"), VIEW_SCHEDULES),
    "schedules create": ADD_SCHEDULES,
    **dict.fromkeys(("schedules update", "schedules pause", "schedules resume", "schedules trigger"), CHANGE_SCHEDULES),
    "schedules delete": DELETE_SCHEDULES,
}
REFUSED, USAGE = 1, 2  # as the `jobs` command's exit codes
SCHEDULE_READS = {"schedules list", "schedules show", "schedules runs"}
LIST_HEADERS = ("NAME", "TYPE", "EVERY", "TZ", "STATE", "SOURCE", "NEXT RUN", "LAST RUN", "OUTCOME", "JOB STATUS")
RUN_HEADERS = ("TICK", "OUTCOME", "JOB", "JOB STATUS", "RECORDED", "LATE")
# Options of create/update -> the services' keyword arguments.
FIELDS = services.schedules.DECLARED


def _fail(message: str, code: int = USAGE) -> CommandError:
    return CommandError(message, returncode=code)


def _every(schedule: Any) -> str:
    return schedule.cron or f"{schedule.interval_seconds}s"


def _nullable_int(text: str) -> int | None:
    if text.lower() in {"", "none", "null", "default"}:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (or 'none')") from None
    if not 0 <= value <= LARGEST_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {LARGEST_SECONDS}")
    return value


def add_schedule_parser(action: Any, common: argparse.ArgumentParser) -> None:
    """The `schedules` subcommand and its own subcommands; `action(name, help)` makes a parser."""
    schedules = action("schedules", "recurring jobs: list, show, create, update, pause, resume, trigger, delete, runs")
    subs = schedules.add_subparsers(dest="schedule_action", required=True, parser_class=CommandParser)

    def sub(name: str, help: str, *, named: bool = True) -> CommandParser:
        parser = subs.add_parser(name, help=help, parents=[common])
        if named:
            parser.add_argument("name")
        return parser

    sub("list", "schedules by name: next run, last run and its outcome", named=False)
    sub("show", "one schedule with every field")
    for verb, help in (("create", "create a run-time schedule"), ("update", "change a run-time schedule")):
        # Only the options given reach the handler: an update changes those and nothing else.
        parser = sub(verb, help)
        parser.argument_default = argparse.SUPPRESS
        parser.add_argument("--type", dest="job_type", required=verb == "create", help="the job type to submit")
        parser.add_argument("--payload", help="JSON object")
        parser.add_argument("--priority", choices=Priority.values)
        parser.add_argument("--max-retries", type=_nullable_int, help="'none': the type's default")
        parser.add_argument("--cron", help="five fields or an alias (@hourly)")
        parser.add_argument("--every", dest="interval_seconds", type=_nullable_int, help="interval in seconds")
        parser.add_argument("--tz", dest="timezone", help="IANA time zone, e.g. Europe/Berlin")
        parser.add_argument("--missed", choices=MissedPolicy.values, help="missed-run policy")
        parser.add_argument("--catch-up", dest="catch_up_seconds", type=_nullable_int, help="all_within's window (s)")
        parser.add_argument("--overlap", choices=OverlapPolicy.values, help="overlap policy")
        if verb == "create":
            parser.add_argument("--paused", action="store_true", default=False, help="create it paused")
    sub("pause", "pause a schedule: no tick fires until it is resumed")
    sub("resume", "resume a schedule from now on")
    sub("trigger", "run a schedule now, as an ordinary job")
    delete = sub("delete", "delete a run-time schedule and its runs")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    runs = sub("runs", "the ticks of a schedule, newest first")
    runs.add_argument("--limit", type=int, default=50)


class ScheduleCommands:
    """The `schedules` handlers; the command provides emit, emit_job, log, confirmed, json_object
    and actor (the user of --as, or None: the operator's shell, which code trusts)."""

    actor: Any = None

    def do_schedules(self, *, schedule_action: str, **options: Any) -> None:
        getattr(self, f"schedules_{schedule_action}")(**options)

    def emit_schedule(self, schedule: Any) -> None:
        data = ScheduleSerializer(selectors.schedule_with_last_run(name=schedule.name)).data
        lines = [f"{key:>16}: {plain(value)}" for key, value in data.items()]
        self.emit(data, "\n".join(lines))

    def schedule_fields(self, options: dict) -> dict:
        """The options given to create/update as the services' arguments ('none' clears a number)."""
        fields = {key: options[key] for key in FIELDS if key in options}
        if "payload" in fields:
            fields["payload"] = self.json_object(fields["payload"])
        return fields

    def schedules_list(self, **_: Any) -> None:
        schedules = list(selectors.schedules_overview())
        now = timezone.now()
        rows = [
            (
                s.name,
                s.job_type,
                _every(s),
                s.timezone,
                "enabled" if s.enabled else "paused",
                s.source,
                s.next_tick_at.isoformat() if s.next_tick_at else None,
                f"{age(s.last_run_tick_at, now)} ago" if s.last_run_tick_at else None,
                s.last_run_outcome,
                s.last_run_job_status,
            )
            for s in schedules
        ]
        self.emit(ScheduleSerializer(schedules, many=True).data, table(rows, LIST_HEADERS))

    def schedules_show(self, *, name: str, **_: Any) -> None:
        self.emit_schedule(selectors.schedule_with_last_run(name=name))

    def schedules_create(self, *, name: str, paused: bool, **options: Any) -> None:
        schedule = services.schedule_create(
            name=name, enabled=not paused, actor=self.actor, **self.schedule_fields(options)
        )
        self.log(obj=schedule, message="Created", flag=history.ADDITION)
        self.emit_schedule(schedule)

    def schedules_update(self, *, name: str, **options: Any) -> None:
        schedule = selectors.schedule_by_name(name=name)
        changes = self.schedule_fields(options)
        if not changes:
            raise _fail("give at least one field to change (see `jobs schedules update --help`)")
        schedule = services.schedule_update(schedule=schedule, actor=self.actor, **changes)
        self.log(obj=schedule, message=f"Changed {', '.join(sorted(changes))}")
        self.emit_schedule(schedule)

    def schedules_pause(self, *, name: str, **_: Any) -> None:
        schedule = services.schedule_pause(schedule=selectors.schedule_by_name(name=name))
        self.log(obj=schedule, message="Paused")
        self.emit_schedule(schedule)

    def schedules_resume(self, *, name: str, **_: Any) -> None:
        schedule = services.schedule_resume(schedule=selectors.schedule_by_name(name=name))
        self.log(obj=schedule, message="Resumed")
        self.emit_schedule(schedule)

    def schedules_trigger(self, *, name: str, **_: Any) -> None:
        schedule = selectors.schedule_by_name(name=name)
        job = services.schedule_trigger(schedule=schedule)
        self.log(obj=schedule, message=f"Run now as job {job.pk}")
        if self.actor is not None and not may_view_every_job(self.actor):  # as the API answers it
            self.emit({"id": str(job.pk), "status": job.status}, f"job {job.pk} {job.status}")
            return
        self.emit_job(selectors.job_by_id(job_id=job.pk))

    def schedules_delete(self, *, name: str, yes: bool, **_: Any) -> None:
        schedule = selectors.schedule_by_name(name=name)
        if not self.confirmed(f"Delete schedule {name} ({schedule.job_type}, {_every(schedule)})?", yes=yes):
            raise _fail("not deleted", REFUSED)
        services.schedule_delete(schedule=copy.copy(schedule))  # deleting clears the pk the history needs
        self.log(obj=schedule, message="Deleted", flag=history.DELETION)
        self.emit({"deleted": name}, f"deleted schedule {name}")

    def schedules_runs(self, *, name: str, limit: int, **_: Any) -> None:
        if limit < 1:
            raise _fail("--limit must be at least 1")
        runs = list(selectors.schedule_runs(schedule=selectors.schedule_by_name(name=name), limit=limit))
        rows = [
            (
                run.tick_at.isoformat(),
                run.outcome,
                run.job_id,
                run.job.status if run.job else None,
                run.recorded_at.isoformat(),
                None if run.lateness_seconds is None else f"{run.lateness_seconds:.2f}s",
            )
            for run in runs
        ]
        self.emit(ScheduleRunSerializer(runs, many=True).data, table(rows, RUN_HEADERS))
