"""The store: the writes of the job lifecycle and the reads of the hot path, behind one interface.

`PortableStore` does everything through Django's ORM and runs on any database Django supports (the
embedded SQLite default, in tests too). `PostgresStore` (jobs/adapters/store/postgres.py) overrides its hot
path (claim, success, insert, token lookup) with single prepared statements. `store()` picks one by
the database, once per process. The columns each write sets besides its move's status are stated
once, here, for both."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import DateTimeField, DurationField, Exists, ExpressionWrapper, F, OuterRef, QuerySet, Value
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from jobs.models import Job, JobAttempt, Outcome, QueueState, UniqueJobKey
from jobs.rules.states import CLAIM, SUCCEED, Status, Transition

# What a claim resets, a success writes, and an opened attempt starts with.
CLAIM_RESETS = {"progress": 0, "progress_message": ""}
ERROR_COLUMNS = ("error_type", "error_message", "error_traceback", "reason")
SUCCESS_SETS = {"progress": 100, "lease_expires_at": None, **dict.fromkeys(ERROR_COLUMNS, "")}
ATTEMPT_OPENS = {"outcome": Outcome.RUNNING, "error_type": "", "error_message": "", "traceback": ""}
# (job id, serial, result, finished at) of a successful attempt.
Finished = tuple[Any, int, Any, datetime]
# The attempts whose duration is known: a lost one's end is when it was found, not when it stopped.
TIMED_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED)
# The most attempts the portable store reads to compute duration percentiles (the newest ones).
PERCENTILE_ROWS = 20_000


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of sorted values, interpolated between the two nearest ranks
    (as PostgreSQL's percentile_cont computes it); None for no values."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class PortableStore:
    def transition(
        self, rows: QuerySet[Job], *, move: Transition, where: dict | None, changes: dict, condition: Any = None
    ) -> int:
        """Make `move` on the `rows` in one of its sources that match `where` and `condition`; how many moved."""
        rows = rows.filter(status__in=move.sources).filter(**(where or {}))
        if condition is not None:
            rows = rows.filter(condition)
        return rows.update(status=move.target, updated_at=timezone.now(), **changes)

    def claim(
        self, *, job_id: Any, worker: str, now: datetime, lease: timedelta, limit_key: str | None = None
    ) -> tuple | None:
        """Move a queued job of an unpaused queue to running and open its attempt in one
        transaction: (type, payload, attempt, serial, timeout, queue), or None. `limit_key`:
        the job's partition of its type's limit, recorded by the limited claim. The lease, `lease`
        long, ends by the database's clock (lease_end)."""
        queue_paused = QueueState.objects.filter(name=OuterRef("priority"), paused=True)
        changes = {
            "attempts": F("attempts") + 1,
            "serial": F("serial") + 1,
            "started_at": Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
            "worker": worker,
            "lease_expires_at": lease_end(lease),
            **CLAIM_RESETS,
        }
        if limit_key is not None:
            changes["limit_key"] = limit_key
        with transaction.atomic():
            rows = Job.objects.filter(pk=job_id)
            if not self.transition(rows, move=CLAIM, where=None, changes=changes, condition=~Exists(queue_paused)):
                return None
            job = rows.only("type", "payload", "priority", "attempts", "serial", "timeout").get()
            opened = {"number": job.serial, "started_at": now, "worker": worker, **ATTEMPT_OPENS}
            JobAttempt.objects.create(job_id=job_id, **opened)
        return job.type, job.payload, job.attempts, job.serial, job.timeout, job.priority

    def running_count(self, *, job_type: str, limit_key: str) -> int:
        """How many jobs of the type's partition of its limit run now."""
        return Job.objects.filter(status=Status.RUNNING, type=job_type, limit_key=limit_key).count()

    def serialised_running_count(self, *, name: str, job_type: str, limit_key: str) -> int:
        """`serialise(name)`, then `running_count`: the count a limited claim decides by, taken
        under the partition's lock."""
        self.serialise(name)
        return self.running_count(job_type=job_type, limit_key=limit_key)

    def claim_within(
        self,
        *,
        name: str,
        concurrency: int,
        job_type: str,
        limit_key: str,
        job_id: Any,
        worker: str,
        now: datetime,
        lease: timedelta,
    ) -> tuple | None:
        """The claim of a type limited by a concurrency only: under the partition's lock
        (`serialise(name)`), claim the job if fewer than `concurrency` of its partition run. The
        claim's row, or None: the partition is full, or the job is not queued."""
        with transaction.atomic():
            if self.serialised_running_count(name=name, job_type=job_type, limit_key=limit_key) >= concurrency:
                return None
            return self.claim(job_id=job_id, worker=worker, now=now, lease=lease, limit_key=limit_key)

    def any_waiting(self, *, job_type: str, limit_key: str) -> bool:
        """Whether a job of the type's partition waits for its limit."""
        return Job.objects.filter(status=Status.WAITING, type=job_type, limit_key=limit_key).exists()

    def succeed_many(self, successes: list[Finished]) -> dict[str, bool | None]:
        """Record successful attempts, each fenced by its serial. The ids of the jobs that moved,
        each with whether a job of its partition of a limit waits: None when not known (here,
        always), False when it held no slot or nobody waits."""
        return {str(finished[0]): None for finished in successes if self._succeed(*finished)}

    def _succeed(self, job_id: Any, serial: int, result: Any, when: datetime) -> bool:
        with transaction.atomic():
            changes = {"result": result, "finished_at": when, **SUCCESS_SETS}
            rows = Job.objects.filter(pk=job_id)
            if not self.transition(rows, move=SUCCEED, where={"serial": serial}, changes=changes):
                return False
            attempt = JobAttempt.objects.filter(job_id=job_id, number=serial)
            attempt.update(outcome=Outcome.SUCCEEDED, finished_at=when)
        return True

    def insert_jobs(self, jobs: list[Job]) -> None:
        """Store new jobs."""
        Job.objects.bulk_create(jobs)

    def insert_unique_keys(self, rows: list[tuple[str, Any, int, datetime]]) -> set[str]:
        """Insert (key, job id, unique_for, taken at) rows whose key nobody holds; the keys
        inserted. One INSERT ... ON CONFLICT DO NOTHING RETURNING (PostgreSQL, and SQLite since
        3.35): a key another transaction inserted and has not committed makes this one wait for its
        outcome."""
        if not rows:
            return set()
        fields = [UniqueJobKey._meta.get_field(name) for name in ("key", "job", "unique_for", "taken_at")]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        values = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * len(rows))
        params = [
            field.get_db_prep_save(value, connection) for row in rows for field, value in zip(fields, row, strict=True)
        ]
        key = connection.ops.quote_name(fields[0].column)
        statement = (
            f"INSERT INTO {connection.ops.quote_name(UniqueJobKey._meta.db_table)} ({columns}) VALUES {values} "
            f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return {row[0] for row in cursor.fetchall()}

    def unique_holders(self, keys: list[str]) -> dict[str, tuple[int, Job]]:
        """key -> (its unique_for, the job that holds it), for the keys of `keys` that exist."""
        rows = UniqueJobKey.objects.filter(key__in=keys).select_related("job")
        return {row.key: (row.unique_for, row.job) for row in rows}

    def token_owner(self, key: str) -> Any:
        """The API token `key` with its user (`token.user`), or None."""
        from rest_framework.authtoken.models import Token

        return Token.objects.select_related("user").filter(key=key).first()

    def duration_percentiles(
        self, *, since: datetime, until: datetime, fractions: Sequence[float]
    ) -> dict[str, tuple[float | None, ...]]:
        """Per job type, the percentiles (`fractions`, 0-1) of the durations in seconds of the
        attempts that succeeded or failed in [since, until): here over the newest PERCENTILE_ROWS."""
        rows = (
            JobAttempt.objects.filter(finished_at__gte=since, finished_at__lt=until, outcome__in=TIMED_OUTCOMES)
            .order_by("-finished_at")
            .values_list("job__type", "started_at", "finished_at")[:PERCENTILE_ROWS]
        )
        durations: dict[str, list[float]] = {}
        for job_type, started, finished in rows:
            durations.setdefault(job_type, []).append(max((finished - started).total_seconds(), 0.0))
        return {
            job_type: tuple(percentile(sorted(values), fraction) for fraction in fractions)
            for job_type, values in durations.items()
        }

    def serialise(self, name: str) -> None:
        """Hold the lock named `name` until the transaction ends, so that one of the processes that
        ask for it goes at a time. SQLite serialises every writing transaction already."""

    def ping(self, *, timeout: float) -> None:
        """Ask the database a trivial question, bounded by `timeout` seconds where it can be."""
        with transaction.atomic(), connection.cursor() as cursor:
            self._bound(cursor, timeout)
            cursor.execute("SELECT 1")

    def _bound(self, cursor: Any, timeout: float) -> None:
        """Bound the statements of this transaction; SQLite, a local file, has no such setting."""


@cache
def lease_end(lease: timedelta) -> Any:
    """When a lease `lease` long, taken now, ends: by the database's clock, the one the mover reads
    it by (recovery.jobs_requeue_lost), so the clocks of the nodes never enter into it."""
    return ExpressionWrapper(Now() + Value(lease, output_field=DurationField()), output_field=DateTimeField())


def store() -> PortableStore:
    """The store of this process's database."""
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        from jobs.adapters.store.postgres import PostgresStore

        return PostgresStore()
    return PortableStore()
