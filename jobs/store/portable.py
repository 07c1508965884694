"""The store on any database Django supports, through the ORM: the interface, and the
implementation the PostgreSQL store (jobs/store/postgres.py) overrides where it is faster."""

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import DateTimeField, Exists, F, OuterRef, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import Job, JobAttempt, Outcome, QueueState
from jobs.states import CLAIM, SUCCEED, Transition

from . import ATTEMPT_OPENS, CLAIM_RESETS, SUCCESS_SETS

# (job id, serial, result, finished at) of a successful attempt.
Finished = tuple[Any, int, Any, datetime]


class PortableStore:
    def transition(
        self, rows: QuerySet[Job], *, move: Transition, where: dict | None, changes: dict, condition: Any = None
    ) -> int:
        """Make `move` on the `rows` in one of its sources that match `where` and `condition`; how many moved."""
        rows = rows.filter(status__in=move.sources).filter(**(where or {}))
        if condition is not None:
            rows = rows.filter(condition)
        return rows.update(status=move.target, updated_at=timezone.now(), **changes)

    def claim(self, *, job_id: Any, worker: str, now: datetime, lease: datetime) -> tuple | None:
        """Move a queued job of an unpaused queue to running and open its attempt in one
        transaction: (type, payload, attempt, serial, timeout, queue), or None."""
        queue_paused = QueueState.objects.filter(name=OuterRef("priority"), paused=True)
        changes = {
            "attempts": F("attempts") + 1,
            "attempts_total": F("attempts_total") + 1,
            "started_at": Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
            "worker": worker,
            "lease_expires_at": lease,
            **CLAIM_RESETS,
        }
        with transaction.atomic():
            rows = Job.objects.filter(pk=job_id)
            if not self.transition(rows, move=CLAIM, where=None, changes=changes, condition=~Exists(queue_paused)):
                return None
            job = rows.only("type", "payload", "priority", "attempts", "attempts_total", "timeout").get()
            opened = {"number": job.attempts_total, "started_at": now, "worker": worker, **ATTEMPT_OPENS}
            JobAttempt.objects.create(job_id=job_id, **opened)
        return job.type, job.payload, job.attempts, job.attempts_total, job.timeout, job.priority

    def succeed_many(self, successes: list[Finished]) -> set[str]:
        """Record successful attempts, each fenced by its serial; the ids of the jobs that moved."""
        return {str(finished[0]) for finished in successes if self._succeed(*finished)}

    def _succeed(self, job_id: Any, serial: int, result: Any, when: datetime) -> bool:
        with transaction.atomic():
            changes = {"result": result, "finished_at": when, **SUCCESS_SETS}
            rows = Job.objects.filter(pk=job_id)
            if not self.transition(rows, move=SUCCEED, where={"attempts_total": serial}, changes=changes):
                return False
            attempt = JobAttempt.objects.filter(job_id=job_id, number=serial)
            attempt.update(outcome=Outcome.SUCCEEDED, finished_at=when)
        return True

    def insert_jobs(self, jobs: list[Job]) -> None:
        """Store new jobs."""
        Job.objects.bulk_create(jobs)

    def token_owner(self, key: str) -> Any:
        """The API token `key` with its user (`token.user`), or None."""
        from rest_framework.authtoken.models import Token

        return Token.objects.select_related("user").filter(key=key).first()

    def ping(self, *, timeout: float) -> None:
        """Ask the database a trivial question, bounded by `timeout` seconds where it can be."""
        with transaction.atomic(), connection.cursor() as cursor:
            self._bound(cursor, timeout)
            cursor.execute("SELECT 1")

    def _bound(self, cursor: Any, timeout: float) -> None:
        """Bound the statements of this transaction; SQLite, a local file, has no such setting."""
