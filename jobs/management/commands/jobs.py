"""`manage.py jobs ...`: submit, inspect and steer jobs from a shell. Exit 0 on success, 1 on error."""

import json
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs import selectors, services
from jobs.exceptions import JobQueueError
from jobs.serializers import JobStatusSerializer
from jobs.states import Priority, Status

LIST_COLUMNS = ("id", "type", "status", "priority", "attempts", "created_at")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError("--payload must be a JSON object")
    return value


class Command(BaseCommand):
    help = "Submit, inspect, retry, cancel and purge jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
        actions = parser.add_subparsers(dest="action", required=True, parser_class=CommandParser)
        submit = actions.add_parser("submit", help="submit a job")
        submit.add_argument("type")
        submit.add_argument("--payload", default="{}", help="JSON object")
        submit.add_argument("--priority", choices=Priority.values, default=Priority.MEDIUM)
        submit.add_argument("--delay", type=float)
        submit.add_argument("--run-at", help="ISO 8601 time")
        submit.add_argument("--max-retries", type=int)
        submit.add_argument("--idempotency-key")
        submit.add_argument("--owner", help="username owning the job")
        actions.add_parser("status", help="show one job").add_argument("id")
        listing = actions.add_parser("list", help="list jobs, newest first")
        listing.add_argument("--status", choices=Status.values)
        listing.add_argument("--type")
        listing.add_argument("--priority", choices=Priority.values)
        listing.add_argument("--limit", type=int, default=50)
        retry = actions.add_parser("retry", help="run a dead job again (same id), or all dead jobs")
        retry.add_argument("id", nargs="?")
        retry.add_argument("--all-dead", action="store_true")
        retry.add_argument("--payload", help="corrected payload, JSON object")
        actions.add_parser("resubmit", help="submit a copy of a job as a new job").add_argument("id")
        actions.add_parser("cancel", help="cancel a scheduled, queued or retrying job").add_argument("id")
        actions.add_parser("delete", help="delete a job that is not running").add_argument("id")
        purge = actions.add_parser("purge", help="delete dead jobs")
        purge.add_argument("--older-than-days", type=float, help="only those dead for longer than this")
        actions.add_parser("stats", help="counts by status and queue depths")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        self.as_json = options.pop("json")
        try:
            getattr(self, f"do_{action.replace('-', '_')}")(**options)
        except JobQueueError as exc:
            raise CommandError(str(exc)) from None

    def emit(self, data: Any, text: str) -> None:
        self.stdout.write(json.dumps(data, default=str, indent=2) if self.as_json else text)

    def emit_job(self, job: Any) -> None:
        data = JobStatusSerializer(job).data
        lines = [f"{key:>12}: {value}" for key, value in data.items() if key != "history"]
        lines += [
            f"     attempt {a['number']}: {a['outcome']} on {a['worker']} at {a['started_at']}" for a in data["history"]
        ]
        self.emit(data, "\n".join(lines))

    def do_submit(self, *, type: str, payload: str, run_at: str | None, owner: str | None, **options: Any) -> None:
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user named {owner!r}")
        when = parse_datetime(run_at) if run_at else None
        if run_at and when is None:
            raise CommandError(f"--run-at {run_at!r} is not an ISO 8601 time")
        fields = {k: options[k] for k in ("priority", "delay", "max_retries", "idempotency_key")}
        job, _ = services.job_submit(type=type, payload=_json_object(payload), owner=user, run_at=when, **fields)
        self.emit_job(job)

    def do_status(self, *, id: str, **_: Any) -> None:
        self.emit_job(selectors.job_by_id(job_id=id))

    def do_list(self, *, status: str | None, type: str | None, priority: str | None, limit: int, **_: Any) -> None:
        rows = list(selectors.jobs_filtered(status=status, type=type, priority=priority)[: max(1, limit)])
        data = [{column: getattr(job, column) for column in LIST_COLUMNS} for job in rows]
        table = [" ".join(f"{c:<10}" for c in LIST_COLUMNS)]
        table += [" ".join(f"{str(row[c]):<10}" for c in LIST_COLUMNS) for row in data]
        self.emit(data, "\n".join(table))

    def do_retry(self, *, id: str | None, all_dead: bool, payload: str | None, **_: Any) -> None:
        if all_dead == bool(id):
            raise CommandError("give a job id or --all-dead (not both)")
        if all_dead:
            count = services.jobs_retry_dead()
            self.emit({"retried": count}, f"retried {count} dead jobs")
            return
        self.emit_job(services.job_retry(job_id=id, payload=_json_object(payload) if payload else None))

    def do_resubmit(self, *, id: str, **_: Any) -> None:
        self.emit_job(services.job_resubmit(job_id=id))

    def do_cancel(self, *, id: str, **_: Any) -> None:
        self.emit_job(services.job_cancel(job_id=id))

    def do_delete(self, *, id: str, **_: Any) -> None:
        services.job_delete(job_id=id)
        self.emit({"deleted": id}, f"deleted {id}")

    def do_purge(self, *, older_than_days: float | None, **_: Any) -> None:
        before = timezone.now() - timedelta(days=older_than_days) if older_than_days is not None else None
        count = services.jobs_purge_dead(finished_before=before)
        self.emit({"purged": count}, f"purged {count} dead jobs")

    def do_stats(self, **_: Any) -> None:
        stats = selectors.job_stats()
        lines = [f"{status:>10}: {count}" for status, count in stats["statuses"].items()]
        lines += [f"{'queue ' + queue:>10}: {depth}" for queue, depth in stats["queues"].items()]
        self.emit(stats, "\n".join(lines))
