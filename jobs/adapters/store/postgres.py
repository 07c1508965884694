"""The store on PostgreSQL: the portable store with its hot path as single statements.

A claim is one statement, successes are recorded many at a time, new jobs go in by a prepared INSERT
or COPY, and an API token is read with its user by a prepared statement. Each write updates jobs
under the guard of `PortableStore.transition` (the move's sources from the state machine, plus the
attempt's serial; a claim also skips a paused queue) and writes the attempt history in the same
round trip with a data-modifying CTE.

The status guard is a join (`status IN (SELECT unnest(...))`), not a plain `status = ...` filter:
from a filter on status the planner may prove a partial index by status usable (job_queued_age,
job_running_lease) and, with statistics taken while that status had few rows, prefer it to the
primary key, scanning the whole backlog on every claim. Through a join the only way to the row is
its primary key."""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from psycopg import pq
from psycopg.types.json import Jsonb

from jobs.adapters import internals
from jobs.adapters.store import ATTEMPT_OPENS, CLAIM_RESETS, SUCCESS_SETS, TIMED_OUTCOMES, Finished, PortableStore
from jobs.models import Job, JobAttempt, Outcome, QueueState, UniqueJobKey
from jobs.rules.states import CLAIM, SUCCEED, Status

JOB = Job._meta.db_table
ATTEMPT = JobAttempt._meta.db_table
QUEUE = QueueState._meta.db_table
UNIQUE = UniqueJobKey._meta.db_table


# The guards: the sources of the state machine's moves, written into the statements.
CLAIM_SOURCES = sorted(CLAIM.sources)
SUCCEED_SOURCES = sorted(SUCCEED.sources)


def _word(value: str) -> str:
    """A status or outcome as an SQL literal: written into the statement, not sent per call."""
    assert value.isidentifier(), value
    return f"'{value}'"


def _words(values: list[str]) -> str:
    return f"ARRAY[{', '.join(_word(value) for value in values) or 'NULL'}]::text[]"


def _literal(value: Any) -> str:
    return "NULL" if value is None else str(value) if isinstance(value, int) else _word(value) if value else "''"


def _sets(columns: dict[str, Any], table: str = "") -> str:
    """The constant part of a write, `column = literal, ...`."""
    return ", ".join(f"{table}{column} = {_literal(value)}" for column, value in columns.items())


def _claim_statement(extra: str = "", guard: str = "") -> str:
    """The claim; `extra`: more `column = value, ` to set (the limited claim's partition);
    `guard`: more `AND ...` the job must meet."""
    return f"""
WITH claimed AS (
    UPDATE {JOB} SET status = {_word(CLAIM.target)}, attempts = attempts + 1, serial = serial + 1,
        started_at = COALESCE(started_at, %(now)s), worker = %(worker)s, lease_expires_at = now() + %(lease)s,
        {extra}{_sets(CLAIM_RESETS)}, updated_at = %(now)s
    WHERE id = %(id)s AND status IN (SELECT unnest({_words(CLAIM_SOURCES)}))
        AND NOT EXISTS (SELECT 1 FROM {QUEUE} WHERE {QUEUE}.name = {JOB}.priority AND {QUEUE}.paused){guard}
    RETURNING id, type, payload, attempts, serial, timeout, priority
), opened AS (
    INSERT INTO {ATTEMPT} (job_id, number, started_at, worker, {", ".join(ATTEMPT_OPENS)})
    SELECT id, serial, %(now)s, %(worker)s, {", ".join(map(_literal, ATTEMPT_OPENS.values()))} FROM claimed
)
SELECT type, payload, attempts, serial, timeout, priority FROM claimed
"""


CLAIM_STATEMENT = _claim_statement()
# A claim of a limited type also records the job's partition of the limit.
CLAIM_LIMITED_STATEMENT = _claim_statement("limit_key = %(limit_key)s, ")


def _running_count(job_type: str, limit_key: str) -> str:
    """The count of a partition's running jobs; the arguments: its placeholders."""
    return (
        f"SELECT count(*) FROM {JOB} slot "
        f"WHERE slot.status = {_word(Status.RUNNING)} AND slot.type = {job_type} AND slot.limit_key = {limit_key}"
    )


# The reads of a limited claim and of an attempt's end. Through the partial indexes of the
# limits (job_limit_slots, job_limit_waiting), whatever the size of the backlog.
RUNNING_COUNT = _running_count("%s", "%s")
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# The claim of a type with a concurrency only: taken only while its partition has a free slot.
# A statement of its own after the partition's lock, so its count sees every claim before it.
CLAIM_WITHIN_STATEMENT = _claim_statement(
    "limit_key = %(limit_key)s, ",
    f" AND ({_running_count('%(type)s', '%(limit_key)s')}) < %(concurrency)s",
)
ANY_WAITING = f"SELECT 1 FROM {JOB} WHERE status = {_word(Status.WAITING)} AND type = %s AND limit_key = %s LIMIT 1"

# A success's columns, and, for a job that held a slot of a limit, whether a job of its
# partition waits (NULL for a job that held none).
SUCCESS_SET = f"status = {_word(SUCCEED.target)}, {_sets(SUCCESS_SETS)}"
ANY_WAITING_FOR_DONE = f"""CASE WHEN done.limit_key IS NULL THEN NULL ELSE EXISTS (
    SELECT 1 FROM {JOB} w
    WHERE w.status = {_word(Status.WAITING)} AND w.type = done.type AND w.limit_key = done.limit_key
) END"""

SUCCEED_MANY = f"""
WITH finished AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(serials)s::integer[], %(results)s::text[], %(times)s::timestamptz[])
        AS f(id, serial, result, finished_at)
), done AS (
    UPDATE {JOB} SET {SUCCESS_SET}, result = f.result::jsonb, finished_at = f.finished_at, updated_at = f.finished_at
    FROM finished f
    WHERE {JOB}.id = f.id AND {JOB}.status IN (SELECT unnest({_words(SUCCEED_SOURCES)}))
        AND {JOB}.serial = f.serial
    RETURNING {JOB}.id, f.serial, f.finished_at, {JOB}.type, {JOB}.limit_key
), closed AS (
    UPDATE {ATTEMPT} SET outcome = {_word(Outcome.SUCCEEDED)}, finished_at = done.finished_at
    FROM done WHERE {ATTEMPT}.job_id = done.id AND {ATTEMPT}.number = done.serial
)
SELECT id, {ANY_WAITING_FOR_DONE} FROM done
"""

# One success (a job that held a slot, written before its task returns; a batch of one), as a
# prepared statement: no join, each row reached by its key.
SUCCEED_ONE = f"""
WITH done AS (
    UPDATE {JOB} SET {SUCCESS_SET}, result = %(result)s::jsonb, finished_at = %(at)s, updated_at = %(at)s
    WHERE id = %(id)s AND status IN (SELECT unnest({_words(SUCCEED_SOURCES)})) AND serial = %(serial)s::integer
    RETURNING id, type, limit_key
), closed AS (
    UPDATE {ATTEMPT} SET outcome = {_word(Outcome.SUCCEEDED)}, finished_at = %(at)s
    WHERE job_id = %(id)s AND number = %(serial)s::integer AND EXISTS (SELECT 1 FROM done)
)
SELECT id, {ANY_WAITING_FOR_DONE} FROM done
"""


TIMED = _words([outcome.value for outcome in TIMED_OUTCOMES])
DURATION_PERCENTILES = f"""
SELECT j.type, percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
    ORDER BY GREATEST(EXTRACT(EPOCH FROM a.finished_at - a.started_at), 0)
)
FROM {ATTEMPT} a JOIN {JOB} j ON j.id = a.job_id
WHERE a.finished_at >= %(since)s AND a.finished_at < %(until)s AND a.outcome = ANY({TIMED})
GROUP BY j.type
"""

NEVER_AUTOMATICALLY = 2**31 - 1


@contextmanager
def _cursor(*, prepare: bool = False) -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection, in its transaction; errors come out as Django's
    (DatabaseError...). Django's cursors bind parameters on the client, so PostgreSQL parses and
    plans every call. `prepare`: statements run on this cursor with prepare=True become server-side
    prepared statements, parsed once per connection and, for a statement whose best plan does not
    depend on the values or on the tables' sizes, planned once too."""
    database = connections[DEFAULT_DB_ALIAS]  # looked up once: each use of the proxy looks again
    database.ensure_connection()
    raw = database.connection
    if prepare:
        # A threshold no query reaches: prepared are the statements that ask, and only those.
        internals.allow_prepared_statements(raw, NEVER_AUTOMATICALLY)
    with database.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor


def _execute(statement: str, params: dict[str, Any] | list[Any], *, prepare: bool) -> list[tuple]:
    """Run one hot-path statement; its rows, if it returns any."""
    with _cursor(prepare=prepare) as cursor:
        cursor.execute(statement, params, prepare=prepare)
        result = cursor.pgresult  # not cursor.description, which builds a Column for each field
        return cursor.fetchall() if result is not None and result.status == pq.ExecStatus.TUPLES_OK else []


def claim_params(*, job_id: Any, worker: str, now: datetime, lease: timedelta) -> dict[str, Any]:
    return {"id": str(job_id), "now": now, "worker": worker, "lease": lease}


def succeed_one_params(success: Finished) -> dict[str, Any]:
    job_id, serial, result, finished_at = success
    return {
        "id": str(job_id),
        "serial": serial,
        "result": None if result is None else json.dumps(result),
        "at": finished_at,
    }


def succeed_many_params(successes: list[Finished]) -> dict[str, Any]:
    """`successes`: (job id, serial, result, finished at) of each attempt."""
    ids, serials, results, times = zip(*successes, strict=True) if successes else ((), (), (), ())
    return {
        "ids": [str(job_id) for job_id in ids],
        "serials": list(serials),
        "results": [None if result is None else json.dumps(result) for result in results],
        "times": list(times),
    }


JOB_FIELDS = Job._meta.concrete_fields
JOB_COLUMNS = ", ".join(f'"{field.column}"' for field in JOB_FIELDS)
_JSON_FIELDS = frozenset(field.attname for field in JOB_FIELDS if isinstance(field, models.JSONField))
INSERT_JOB = f"INSERT INTO {JOB} ({JOB_COLUMNS}) VALUES ({', '.join(['%s'] * len(JOB_FIELDS))})"
JOB_NAMES = [field.attname for field in JOB_FIELDS]
HOLDER_COLUMNS = ", ".join(f'j."{field.column}"' for field in JOB_FIELDS)
UNIQUE_HOLDERS = (
    f"SELECT k.key, k.unique_for, {HOLDER_COLUMNS} "
    f"FROM {UNIQUE} k JOIN {JOB} j ON j.id = k.job_id WHERE k.key = ANY(%s::text[])"
)


def _job_row(job: Job) -> list[Any]:
    row = []
    for field in JOB_FIELDS:
        value = field.pre_save(job, True)  # fills created_at and updated_at
        row.append(Jsonb(value) if field.attname in _JSON_FIELDS and value is not None else value)
    return row


@cache
def _token_owner_statement() -> tuple[str, list[str], type[models.Model], type[models.Model]] | None:
    """The statement that reads a token's creation time and its user's row, the user's field
    names, and the user and token models; None for a user model with fields that convert what
    the database returns."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model()
    fields = user._meta.concrete_fields
    if any(hasattr(field, "from_db_value") for field in fields):
        return None
    columns = ", ".join(f'u."{field.column}"' for field in fields)
    statement = (
        f'SELECT t."created", {columns} FROM "{Token._meta.db_table}" t '
        f'JOIN "{user._meta.db_table}" u ON u."{user._meta.pk.column}" = t."user_id" WHERE t."key" = %s'
    )
    return statement, [field.attname for field in fields], user, Token


def _claimed(row: tuple) -> tuple:
    job_type, payload, attempt, serial, timeout, queue = row
    # Django's PostgreSQL backend hands jsonb over as text; its JSONField decodes it, so do we.
    return job_type, json.loads(payload) if isinstance(payload, str) else payload, attempt, serial, timeout, queue


class PostgresStore(PortableStore):
    def claim(
        self, *, job_id: Any, worker: str, now: datetime, lease: timedelta, limit_key: str | None = None
    ) -> tuple | None:
        params = claim_params(job_id=job_id, worker=worker, now=now, lease=lease)
        if limit_key is None:
            rows = _execute(CLAIM_STATEMENT, params, prepare=True)
        else:
            rows = _execute(CLAIM_LIMITED_STATEMENT, {**params, "limit_key": limit_key}, prepare=True)
        return _claimed(rows[0]) if rows else None

    def running_count(self, *, job_type: str, limit_key: str) -> int:
        """A prepared statement: the ORM compiles the query anew on every claim of a limited type."""
        return _execute(RUNNING_COUNT, [job_type, limit_key], prepare=True)[0][0]

    def serialised_running_count(self, *, name: str, job_type: str, limit_key: str) -> int:
        """The lock and the count pipelined, one round trip: PostgreSQL runs them in order, and
        the count, a statement of its own, sees what committed before the lock was granted."""
        with _cursor(prepare=True) as lock, _cursor(prepare=True) as count:
            with lock.connection.pipeline():
                lock.execute(LOCK, [name], prepare=True)
                count.execute(RUNNING_COUNT, [job_type, limit_key], prepare=True)
            return count.fetchone()[0]

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
        """In one round trip: the transaction, the partition's lock and the claim guarded by the
        count of its running jobs, pipelined. Inside a transaction already open, its lock is held
        until that one ends."""
        params = {
            **claim_params(job_id=job_id, worker=worker, now=now, lease=lease),
            "type": job_type,
            "limit_key": limit_key,
            "concurrency": concurrency,
        }
        with _cursor(prepare=True) as claim:
            with psycopg.Cursor(claim.connection) as lock, internals.pipelined_transaction(lock):
                lock.execute(LOCK, [name], prepare=True)
                claim.execute(CLAIM_WITHIN_STATEMENT, params, prepare=True)
            rows = claim.fetchall()
        return _claimed(rows[0]) if rows else None

    def any_waiting(self, *, job_type: str, limit_key: str) -> bool:
        """A prepared statement, at the end of every attempt of a limited type."""
        return bool(_execute(ANY_WAITING, [job_type, limit_key], prepare=True))

    def succeed_many(self, successes: list[Finished]) -> dict[str, bool | None]:
        """In one statement, which also tells, for a job that held a slot of a limit, whether a job
        of its partition waits. One success by a prepared statement, which reaches each row by its
        key (its plan is made again when ANALYZE, autovacuum's, renews the statistics). More by one
        that is not: a plan of its join cached while the attempt history was nearly empty would scan
        it whole on every call as it grows; planned per batch, it follows the table's size."""
        if len(successes) == 1:
            rows = _execute(SUCCEED_ONE, succeed_one_params(successes[0]), prepare=True)
        else:
            rows = _execute(SUCCEED_MANY, succeed_many_params(successes), prepare=False)
        return {str(job_id): waiting for job_id, waiting in rows}

    def insert_jobs(self, jobs: list[Job]) -> None:
        """Store new jobs: one as a prepared INSERT, more with one COPY. Django's ORM compiles every
        value of every row into SQL, the larger part of a submission's time; these send the rows
        as they are."""
        if len(jobs) == 1:
            _execute(INSERT_JOB, _job_row(jobs[0]), prepare=True)
        else:
            with _cursor() as cursor, cursor.copy(f"COPY {JOB} ({JOB_COLUMNS}) FROM STDIN") as copy:
                for job in jobs:
                    copy.write_row(_job_row(job))
        for job in jobs:
            internals.mark_saved(job, connection.alias)

    def unique_holders(self, keys: list[str]) -> dict[str, tuple[int, Job]]:
        """In one prepared statement: the ORM's join compiles every column of the job on each call."""
        holders = {}
        for key, unique_for, *values in _execute(UNIQUE_HOLDERS, [keys], prepare=True):
            # Django's PostgreSQL backend hands jsonb over as text; its JSONField decodes it, so do we.
            decoded = [
                json.loads(value) if name in _JSON_FIELDS and isinstance(value, str) else value
                for name, value in zip(JOB_NAMES, values, strict=True)
            ]
            holders[key] = (unique_for, Job.from_db(connection.alias, JOB_NAMES, decoded))
        return holders

    def token_owner(self, key: str) -> Any:
        """In one prepared statement; by the ORM for a user model with fields that convert what
        the database returns."""
        prepared = _token_owner_statement()
        if prepared is None:
            return super().token_owner(key)
        statement, names, user, token_model = prepared
        rows = _execute(statement, [key], prepare=True)
        if not rows:
            return None
        created, *values = rows[0]
        owner = user.from_db(connection.alias, names, values)
        token = token_model.from_db(connection.alias, ["key", "user_id", "created"], [key, owner.pk, created])
        token.user = owner
        return token

    def duration_percentiles(
        self, *, since: datetime, until: datetime, fractions: Sequence[float]
    ) -> dict[str, tuple[float | None, ...]]:
        """Over every attempt of the window, in the database (percentile_cont)."""
        params = {"fractions": [float(f) for f in fractions], "since": since, "until": until}
        rows = _execute(DURATION_PERCENTILES, params, prepare=False)
        return {job_type: tuple(float(value) for value in values) for job_type, values in rows}

    def serialise(self, name: str) -> None:
        """A transaction-scoped advisory lock on the 64-bit hash of `name`."""
        _execute(LOCK, [name], prepare=True)

    def _bound(self, cursor: Any, timeout: float) -> None:
        cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
