"""`manage.py jobs ...`: submit, inspect and steer jobs and queues from a shell.

Exit codes: 0 done; 1 refused or invalid input (bad JSON, unknown type, a job in the wrong state, an
actor without the permission); 2 bad usage (unknown option, missing argument); 3 no such job, queue,
schedule or user; 4 the database or Redis does not answer. Errors are one line on stderr.

`--as USER` (or JOB_CLI_USER) names the actor: the command then needs the permissions the admin and
the management API ask of that user, and each change is written to the admin's history under the
user's name. Submitting in another user's name (`submit --owner`) needs jobs.submit_for_others.
JOB_CLI_REQUIRE_ACTOR=1 refuses changes made without one."""

import argparse
import json
import logging
import sys
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, DataError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu.exceptions import OperationalError

from jobs import services
from jobs.api.serializers import JobDetailSerializer, JobSummarySerializer
from jobs.formatting import age, duration, plain, shorten, table
from jobs.rules import registry
from jobs.rules.exceptions import InvalidPayload, JobNotFound, JobQueueError, ScheduleNotFound, UnknownQueue
from jobs.rules.input_limits import NotJSON, parse_json
from jobs.rules.permissions import (
    CHANGE_JOBS,
    CHANGE_QUEUES,
    DELETE_JOBS,
    SUBMIT_FOR_OTHERS,
    VIEW_JOBS,
    VIEW_QUEUES,
    may_operate,
    may_submit_for,
)
from jobs.rules.states import Priority, Status
from jobs.services import history, limit_selectors, selectors

from ._schedules import SCHEDULE_NEEDS, SCHEDULE_READS, ScheduleCommands, add_schedule_parser

REFUSED, USAGE, NOT_FOUND, UNAVAILABLE = 1, 2, 3, 4
LIST_HEADERS = ("ID", "TYPE", "STATUS", "QUEUE", "ATTEMPTS", "PROGRESS", "AGE", "REASON")
LIMIT_HEADERS = ("TYPE", "SOURCE", "LIMITS", "RUNNING", "STARTS IN WINDOW", "WAITING")
QUEUE_HEADERS = ("QUEUE", "STATE", "DEPTH", "QUEUED", "RUNNING", "LATENCY")
# What the actor needs for each subcommand, as the management API asks for the same operation
# (None: any active user, as for the submit endpoint).
NEEDS: dict[str, tuple[str, ...] | None] = {
    **dict.fromkeys(("submit", "demo"), None),
    **dict.fromkeys(("status", "list", "stats"), VIEW_JOBS),  # stats as GET /api/stats/
    **dict.fromkeys(("retry", "resubmit", "cancel", "run-now"), CHANGE_JOBS),
    **dict.fromkeys(("delete", "purge"), DELETE_JOBS),
    **dict.fromkeys(("pause", "resume", "limits set", "limits clear"), CHANGE_QUEUES),
    "limits list": VIEW_QUEUES,  # as GET /api/limits/
    **SCHEDULE_NEEDS,
}
READS = {"status", "list", "stats", "limits list", *SCHEDULE_READS}
VIA = "from the CLI"


def _what(action: str, options: dict[str, Any]) -> str:
    """The subcommand as NEEDS names it: `retry`, `schedules create`, `limits set`."""
    if action == "schedules":
        return f"schedules {options['schedule_action']}"
    if action == "limits":
        return f"limits {options['operation']}"
    return action


def _fail(message: str, code: int = REFUSED) -> CommandError:
    return CommandError(" ".join(str(message).split()), returncode=code)


def _problems(details: Any, path: str = "") -> list[str]:
    """A serializer's errors as `field: message` lines (`to.0: Enter a valid email address.`)."""
    if isinstance(details, dict):
        return [line for key, value in details.items() for line in _problems(value, f"{path}{key}.")]
    if isinstance(details, list) and details and all(isinstance(item, str) for item in details):
        return [f"{path.rstrip('.') or 'payload'}: {' '.join(details)}"]
    if isinstance(details, list):
        return [line for index, value in enumerate(details) for line in _problems(value, f"{path}{index}.")]
    return [f"{path.rstrip('.') or 'payload'}: {details}"]


def _invalid_payload(exc: InvalidPayload) -> CommandError:
    if isinstance(exc.details, dict | list):
        return _fail(f"{exc}: {'; '.join(_problems(exc.details))}")
    return _fail(str(exc))


# What `jobs demo` submits: (type, payload, what to watch for).
DEMO = (
    ("demo.flaky", {"failures": 2}, "fails twice on purpose, is retried, then succeeds"),
    ("demo.flaky", {"failures": 10}, "fails every attempt: dead-letter queue after 4"),
    ("demo.slow", {"seconds": 30}, "runs 30 s with its progress moving"),
    ("email_welcome", {"email": "greylist@example.com"}, "451 greylisted once, retried, delivered"),
    ("email_welcome", {"email": "bounce@example.com"}, "550 no such mailbox: dead at once"),
    ("email_welcome", {"email": "you@example.com"}, "delivered to the development mailbox"),
)


def _user(name: str) -> Any:
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise _fail(f"no user named {name!r}", NOT_FOUND)
    return user


def _json_object(text: str, option: str = "--payload") -> dict:
    try:
        value = parse_json(text)
    except NotJSON as exc:
        raise _fail(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _fail(f"{option} must be a JSON object")
    return value


def _time(text: str | None, option: str):
    if not text:
        return None
    when = parse_datetime(text)
    if when is None:
        raise _fail(f"{option} {text!r} is not an ISO 8601 time", USAGE)
    return when if timezone.is_aware(when) else timezone.make_aware(when, timezone.utc)


def _job_row(job: Any, now: datetime) -> tuple:
    progress, reason = f"{job.progress}%", shorten(job.reason, 40)
    return job.id, job.type, job.status, job.priority, job.attempts, progress, age(job.created_at, now), reason


def _queue_row(queue: dict) -> tuple:
    state = "paused" if queue["paused"] else "running"
    return queue["name"], state, queue["depth"], queue["queued"], queue["running"], duration(queue["latency_seconds"])


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= days <= 36500:
        raise argparse.ArgumentTypeError("must be between 0 and 36500 days")
    return days


class Command(ScheduleCommands, BaseCommand):
    help = "Submit, inspect, retry, cancel and purge jobs; pause and resume queues; manage recurring jobs."
    json_object = staticmethod(_json_object)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
        actor_help = "act as this user: needs its permissions, and its name goes in the admin's history"
        parser.add_argument("--as", dest="actor", metavar="USER", help=actor_help)
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        common.add_argument("--as", dest="actor", metavar="USER", default=argparse.SUPPRESS, help=actor_help)
        actions = parser.add_subparsers(dest="action", required=True, parser_class=CommandParser)

        def action(name: str, help: str) -> CommandParser:
            return actions.add_parser(name, help=help, parents=[common])

        submit = action("submit", "submit a job")
        submit.add_argument("type")
        submit.add_argument("--payload", default="{}", help="JSON object")
        submit.add_argument("--priority", choices=Priority.values, default=Priority.MEDIUM)
        submit.add_argument("--delay", type=float, help="seconds from now")
        submit.add_argument("--run-at", help="ISO 8601 time")
        submit.add_argument("--max-retries", type=int)
        submit.add_argument("--idempotency-key")
        submit.add_argument("--unique-for", type=int, metavar="SECONDS", help="make the job unique for this long")
        unique = submit.add_mutually_exclusive_group()
        unique.add_argument("--unique-fields", metavar="A,B", help="payload fields that make the unique key")
        unique.add_argument("--unique-key", metavar="TEXT", help="an explicit unique key")
        submit.add_argument("--owner", help="username owning the job")
        action("status", "show one job: payload, result, error, traceback, history").add_argument("id")
        listing = action("list", "list jobs, newest first")
        listing.add_argument("--status", choices=Status.values)
        listing.add_argument("--type")
        listing.add_argument("--priority", choices=Priority.values)
        listing.add_argument("--created-after", help="ISO 8601 time")
        listing.add_argument("--created-before", help="ISO 8601 time")
        listing.add_argument("--search", help="text in the id, type, error, reason or payload")
        listing.add_argument("--limit", type=int, default=50)
        retry = action("retry", "run a dead job again (same id), or all dead jobs")
        retry.add_argument("id", nargs="?")
        retry.add_argument("--all-dead", action="store_true")
        retry.add_argument("--payload", help="corrected payload, JSON object")
        action("resubmit", "submit a copy of a job as a new job").add_argument("id")
        action("cancel", "cancel a job that has not finished (a running one is stopped)").add_argument("id")
        action("run-now", "queue a scheduled or retrying job at once").add_argument("id")
        delete = action("delete", "delete a job that is not running")
        delete.add_argument("id")
        purge = action("purge", "delete dead jobs")
        purge.add_argument("--older-than-days", type=_days, help="only those dead for longer than this")
        for destructive in (delete, purge):
            destructive.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")
            destructive.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
        action("demo", "submit the demonstration jobs of `make run`: a retry, dead letters, progress, mail")
        for name, help in (("pause", "pause a queue: nothing of it runs until resumed"), ("resume", "resume a queue")):
            action(name, help).add_argument("queue", choices=Priority.values)
        action("stats", "counts by status, queues, dead letters, workers, the last hour")
        add_schedule_parser(action, common)
        limits = action("limits", "list, set or clear the cluster-wide concurrency and rate limits of job types")
        limits.add_argument("operation", choices=("list", "set", "clear"))
        limits.add_argument("type", nargs="?", help="the job type (for set and clear)")
        limits.add_argument("--concurrency", type=int, help="at most this many running at once")
        limits.add_argument("--rate", help="at most this many starts per period: 60/minute, 5/second, 10/30s")
        limits.add_argument("--key", dest="limit_key", help="payload field that partitions the limits (customer_id)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        self.as_json = options.pop("json")
        quiet = options["verbosity"] < 2  # the job log's INFO lines are for services, not a shell (-v 2 shows them)
        before = logging.root.manager.disable
        if quiet:
            logging.disable(logging.INFO)
        try:
            self.act(action, **options)
        finally:
            logging.disable(before)

    def act(self, action: str, **options: Any) -> None:
        name = options.pop("actor") or settings.JOB_CLI_USER
        what = _what(action, options)
        try:
            self.actor = self.authorised(name, what) if name else None
            if self.actor is None and what not in READS and settings.JOB_CLI_REQUIRE_ACTOR:
                raise _fail(
                    f"`jobs {what}` makes a change: name who acts with --as USER (JOB_CLI_REQUIRE_ACTOR is set)"
                )
            getattr(self, f"do_{action.replace('-', '_')}")(**options)
        except (JobNotFound, UnknownQueue, ScheduleNotFound) as exc:
            raise _fail(str(exc), NOT_FOUND) from None
        except InvalidPayload as exc:
            raise _invalid_payload(exc) from None
        except JobQueueError as exc:
            raise _fail(str(exc)) from None
        except DataError:
            # The database answered: a value it cannot hold is bad input, not an outage.
            raise _fail("the database cannot store a value given (text or a number out of its range)") from None
        except (DatabaseError, redis.RedisError, OperationalError) as exc:
            raise _fail(f"cannot reach a service: {type(exc).__name__}: {exc}", UNAVAILABLE) from None

    def authorised(self, name: str, action: str) -> Any:
        """The user named `name`, if it may run `action`."""
        user = _user(name)
        needed = NEEDS[action]
        if not user.is_active:
            raise _fail(f"user {name!r} is inactive")
        if needed is not None and not may_operate(user, needed):
            raise _fail(f"user {name!r} may not run `jobs {action}`: it needs staff status and {', '.join(needed)}")
        return user

    def log(self, *, obj: Any = None, ids: list[Any] | None = None, message: str, flag: int = history.CHANGE) -> None:
        """Write the change to the admin's history under the actor, when there is one."""
        if self.actor is None:
            return
        if obj is not None:
            history.record(user=self.actor, obj=obj, message=f"{message} {VIA}", flag=flag)
        else:
            history.record_jobs(user=self.actor, ids=ids or [], message=f"{message} {VIA}", flag=flag)

    def emit(self, data: Any, text: str) -> None:
        self.stdout.write(json.dumps(data, default=str, indent=2) if self.as_json else text)

    def emit_job(self, job: Any) -> None:
        data = JobDetailSerializer(job).data
        lines = [f"{key:>16}: {plain(value)}" for key, value in data.items() if key not in {"history", "error"}]
        if data["error"]:
            lines.append(f"{'error':>16}: {data['error']['type']}: {shorten(data['error']['message'], 200)}")
        rows = [
            (a["number"], a["outcome"], a["worker"], a["started_at"], a["finished_at"], (a["error"] or {}).get("type"))
            for a in data["history"]
        ]
        if rows:
            lines += ["", table(rows, ("ATTEMPT", "OUTCOME", "WORKER", "STARTED", "FINISHED", "ERROR"))]
        if data["error"] and data["error"]["traceback"]:
            lines += ["", data["error"]["traceback"].rstrip()]
        self.emit(data, "\n".join(lines))

    def do_submit(self, *, type: str, payload: str, run_at: str | None, owner: str | None, **options: Any) -> None:
        user = _user(owner) if owner else self.actor
        if self.actor is not None and not may_submit_for(self.actor, user):
            raise _fail(
                f"user {self.actor.get_username()!r} may not submit in {owner!r}'s name: "
                f"it needs staff status and {', '.join(SUBMIT_FOR_OTHERS)}"
            )
        fields = {k: options[k] for k in ("priority", "delay", "max_retries", "idempotency_key", "unique_for")}
        fields["unique_key"] = options["unique_key"]
        if options["unique_fields"] is not None:
            fields["unique_key"] = [name.strip() for name in options["unique_fields"].split(",") if name.strip()]
        when = _time(run_at, "--run-at")
        job, created = services.job_submit(
            type=type, payload=_json_object(payload), owner=user, run_at=when, actor=self.actor, **fields
        )
        if created and self.actor is not None and user is not None and user.pk != self.actor.pk:
            self.log(obj=job, message=f"Submitted in {user.get_username()}'s name", flag=history.ADDITION)
        answered = services.answered_with(created=created, job=job, idempotency_key=fields["idempotency_key"])
        if answered and not self.as_json:
            self.stdout.write(f"existing job {job.pk} answered (same {answered.replace('_', ' ')})")
        self.emit_job(job)

    def do_status(self, *, id: str, **_: Any) -> None:
        self.emit_job(selectors.job_by_id(job_id=id))

    def do_list(self, *, limit: int, created_after: str | None, created_before: str | None, **filters: Any) -> None:
        if limit < 1:
            raise _fail("--limit must be at least 1", USAGE)
        jobs = selectors.jobs_filtered(
            created_after=_time(created_after, "--created-after"),
            created_before=_time(created_before, "--created-before"),
            **{key: filters[key] for key in ("status", "type", "priority", "search")},
        )[:limit]
        now = timezone.now()
        rows = [_job_row(job, now) for job in jobs]
        self.emit(JobSummarySerializer(jobs, many=True).data, table(rows, LIST_HEADERS))

    def do_retry(self, *, id: str | None, all_dead: bool, payload: str | None, **_: Any) -> None:
        if all_dead == bool(id):
            raise _fail("give a job id or --all-dead (not both)", USAGE)
        if all_dead:
            if payload:
                raise _fail("--payload needs a job id, not --all-dead", USAGE)
            retried = services.jobs_retry_dead()
            self.log(ids=retried, message="Retried (all dead)")
            self.emit({"retried": len(retried)}, f"retried {len(retried)} dead jobs")
            return
        job = services.job_retry(job_id=id, payload=_json_object(payload) if payload else None, actor=self.actor)
        self.log(obj=job, message="Retried with an edited payload" if payload else "Retried")
        self.emit_job(job)

    def do_resubmit(self, *, id: str, **_: Any) -> None:
        job = services.job_resubmit(job_id=id)
        self.log(obj=job.resubmitted_from, message=f"Resubmitted as {job.pk}")
        self.emit_job(job)

    def do_run_now(self, *, id: str, **_: Any) -> None:
        job = services.job_run_now(job_id=id)
        self.log(obj=job, message="Queued now")
        self.emit_job(job)

    def do_cancel(self, *, id: str, **_: Any) -> None:
        job = services.job_cancel(job_id=id, actor=self.actor)
        self.log(obj=job, message="Cancelled")
        self.emit_job(job)

    def confirmed(self, question: str, *, yes: bool) -> bool:
        """On a terminal, ask `question` unless --yes; scripts (no terminal) are not asked."""
        if yes or not sys.stdin.isatty():
            return True
        self.stderr.write(f"{question} [y/N] ", ending="")
        return sys.stdin.readline().strip().lower() in {"y", "yes"}

    def do_delete(self, *, id: str, dry_run: bool, yes: bool, **_: Any) -> None:
        job = selectors.job_by_id(job_id=id)
        if dry_run:
            self.emit({"would_delete": str(job.pk), "status": job.status}, f"would delete {job.pk} ({job.status})")
            return
        if not self.confirmed(f"Delete job {job.pk} ({job.type}, {job.status})?", yes=yes):
            raise _fail("not deleted")
        services.job_delete(job_id=id)
        self.log(obj=job, message="Deleted", flag=history.DELETION)
        self.emit({"deleted": id}, f"deleted {id}")

    def do_purge(self, *, older_than_days: float | None, dry_run: bool, yes: bool, **_: Any) -> None:
        before = timezone.now() - timedelta(days=older_than_days) if older_than_days is not None else None
        if dry_run or not yes:
            doomed = services.jobs_purge_dead(finished_before=before, dry_run=True)
            if dry_run:
                ids = [str(pk) for pk in doomed]
                self.emit({"would_purge": ids}, "\n".join([f"would purge {len(ids)} dead jobs", *ids]))
                return
            if doomed and not self.confirmed(f"Delete {len(doomed)} dead jobs?", yes=yes):
                raise _fail("nothing purged")
        purged = services.jobs_purge_dead(finished_before=before)
        self.log(ids=purged, message="Purged", flag=history.DELETION)
        self.emit({"purged": len(purged)}, f"purged {len(purged)} dead jobs")

    def by(self) -> str:
        return f"cli:{self.actor.get_username()}" if self.actor else "cli"

    def do_pause(self, *, queue: str, **_: Any) -> None:
        state = services.queue_pause(queue=queue, by=self.by())
        self.log(obj=state, message="Paused")
        self.emit_queue(queue, f"queue {queue} paused: nothing of it runs until `jobs resume {queue}`")

    def do_resume(self, *, queue: str, **_: Any) -> None:
        state, published = services.queue_resume(queue=queue, by=self.by())
        if state.pk is not None:  # a queue never paused has no row
            self.log(obj=state, message="Resumed")
        self.emit_queue(queue, f"queue {queue} resumed; {published} queued jobs published", published=published)

    def emit_queue(self, name: str, text: str, **extra: Any) -> None:
        queue = next(q for q in selectors.queue_overview() if q["name"] == name)
        self.emit({**queue, **extra}, text)

    def do_demo(self, **_: Any) -> None:
        if "demo.flaky" not in registry.names():
            raise _fail("the demonstration types are off (JOB_DEMO_TYPES=0); they come with `make run`")
        rows, data = [], []
        for type_name, payload, expect in DEMO:
            job, _ = services.job_submit(type=type_name, payload=payload, owner=self.actor)
            rows.append((job.pk, type_name, plain(payload), expect))
            data.append({"id": str(job.pk), "type": type_name, "payload": payload, "expect": expect})
        watch = [
            "",
            "Watch them in the admin (/admin/: Overview, Jobs), in Flower, or with `jobs list` and `jobs status <id>`.",
            "Mail delivered by the development SMTP sink: /admin/mail/. A dead one can be retried with",
            "an edited payload, e.g. `jobs retry <id> --payload '{\"failures\": 0}'`.",
        ]
        self.emit(data, "\n".join([table(rows, ("ID", "TYPE", "PAYLOAD", "WHAT TO WATCH")), *watch]))

    def do_stats(self, **_: Any) -> None:
        stats = selectors.job_stats()
        statuses = table([(status, count) for status, count in stats["statuses"].items()], ("STATUS", "JOBS"))
        queues = table([_queue_row(q) for q in stats["queues"]], QUEUE_HEADERS)
        workers = stats["workers"]
        lines = [
            statuses,
            "",
            queues,
            "",
            f"dead-letter list: {'-' if stats['dead_letter'] is None else stats['dead_letter']} messages",
            f"workers online: {'unknown' if workers is None else len(workers)} {' '.join(workers or [])}".rstrip(),
            "last hour: {processed} attempts finished, {succeeded} succeeded, {failed} failed".format(
                **stats["last_hour"]
            ),
        ]
        self.emit(stats, "\n".join(lines))

    def do_limits(
        self, *, operation: str, type: str | None, concurrency: int | None, rate: str | None, limit_key: str | None, **_
    ) -> None:
        if operation != "list" and not type:
            raise _fail(f"`jobs limits {operation}` needs a job type", USAGE)
        if operation == "set":
            if concurrency is None and not rate:
                raise _fail("`jobs limits set` needs --concurrency or --rate (`jobs limits clear` drops an override)")
            override = services.limit_set(
                type=type, concurrency=concurrency, rate=rate, limit_key=limit_key, by=self.by()
            )
            self.log(obj=override, message="Set")
        elif operation == "clear":
            override = services.limit_clear(type=type, by=self.by())
            if override is not None:
                self.log(obj=override, message="Cleared", flag=history.DELETION)
        rows = (
            limit_selectors.limits_overview() if operation == "list" else [limit_selectors.limit_detail(job_type=type)]
        )
        lines = [
            (r["type"], r["source"], r["describe"], r["running"], r["starts_in_window"], r["waiting"]) for r in rows
        ]
        self.emit(rows if operation == "list" else rows[0], table(lines, LIMIT_HEADERS))
