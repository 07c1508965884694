"""The hot path on PostgreSQL: claim and finish an attempt in one statement each.

Each statement updates the job under the same guard as `_transition` (allowed sources from
the state machine, plus the attempt's serial; a claim also skips a paused queue) and writes
the attempt history in the same round trip with a data-modifying CTE. Other databases use
the ORM path in lifecycle.py.

The status guard is a join (`status IN (SELECT unnest(...))`), not a plain `status = ...`
filter: from a filter on status the planner may prove a partial index by status usable
(job_queued_age, job_running_lease) and, with statistics taken while that status had few
rows, prefer it to the primary key, scanning the whole backlog on every claim. Through a join
the only way to the row is its primary key.
"""

import json
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection
from psycopg.types.json import Jsonb

from jobs.models import Job, JobAttempt, Outcome, QueueState
from jobs.states import Status, sources_of

JOB = Job._meta.db_table
ATTEMPT = JobAttempt._meta.db_table
QUEUE = QueueState._meta.db_table

CLAIM = f"""
WITH claimed AS (
    UPDATE {JOB} SET status = %(to)s, attempts = attempts + 1, attempts_total = attempts_total + 1,
        started_at = COALESCE(started_at, %(now)s), worker = %(worker)s, lease_expires_at = %(lease)s,
        progress = 0, progress_message = '', updated_at = %(now)s
    WHERE id = %(id)s AND status IN (SELECT unnest(%(sources)s::text[]))
        AND NOT EXISTS (SELECT 1 FROM {QUEUE} WHERE {QUEUE}.name = {JOB}.priority AND {QUEUE}.paused)
    RETURNING id, type, payload, attempts, attempts_total, timeout, priority
), opened AS (
    INSERT INTO {ATTEMPT} (job_id, number, started_at, worker, outcome, error_type, error_message, traceback)
    SELECT id, attempts_total, %(now)s, %(worker)s, %(outcome)s, '', '', '' FROM claimed
)
SELECT type, payload, attempts, attempts_total, timeout, priority FROM claimed
"""

SUCCEED = f"""
WITH done AS (
    UPDATE {JOB} SET status = %(to)s, result = %(result)s, finished_at = %(now)s, progress = 100,
        lease_expires_at = NULL, error_type = '', error_message = '', error_traceback = '', reason = '',
        updated_at = %(now)s
    WHERE id = %(id)s AND status IN (SELECT unnest(%(sources)s::text[])) AND attempts_total = %(serial)s
    RETURNING id
), closed AS (
    UPDATE {ATTEMPT} SET outcome = %(outcome)s, finished_at = %(now)s
    WHERE job_id IN (SELECT id FROM done) AND number = %(serial)s
)
SELECT count(*) FROM done
"""


def _execute(statement: str, params: dict[str, Any]) -> tuple | None:
    """Run one hot-path statement as a server-side prepared statement; its first row.

    Django's cursors bind parameters on the client, so PostgreSQL would parse and plan the
    statement on every call; prepared once per connection, it is only executed.
    """
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, prepare=True)
        return cursor.fetchone()


def _sources(to: Status, expected: Status) -> list[str]:
    """The guard: the expected source, if the state machine allows it."""
    return [str(s) for s in sources_of(to) & {expected}]


CLAIM_SOURCES = _sources(Status.RUNNING, Status.QUEUED)
SUCCEED_SOURCES = _sources(Status.SUCCEEDED, Status.RUNNING)


def claim_params(*, job_id: Any, worker: str, now: datetime, lease: datetime) -> dict[str, Any]:
    return {
        "to": Status.RUNNING.value,
        "sources": CLAIM_SOURCES,
        "id": str(job_id),
        "now": now,
        "worker": worker,
        "lease": lease,
        "outcome": Outcome.RUNNING.value,
    }


def claim(*, job_id: Any, worker: str, now: datetime, lease: datetime) -> tuple | None:
    """(type, payload, attempt, serial, timeout, queue) of the claimed job, or None."""
    row = _execute(CLAIM, claim_params(job_id=job_id, worker=worker, now=now, lease=lease))
    if row is None:
        return None
    job_type, payload, attempt, serial, timeout, queue = row
    # Django's PostgreSQL backend hands jsonb over as text; its JSONField decodes it, so do we.
    return job_type, json.loads(payload) if isinstance(payload, str) else payload, attempt, serial, timeout, queue


def succeed_params(*, job_id: Any, serial: int, result: Any, now: datetime) -> dict[str, Any]:
    return {
        "to": Status.SUCCEEDED.value,
        "sources": SUCCEED_SOURCES,
        "id": str(job_id),
        "serial": serial,
        "now": now,
        "outcome": Outcome.SUCCEEDED.value,
        "result": None if result is None else Jsonb(result),
    }


def succeed(*, job_id: Any, serial: int, result: Any, now: datetime) -> bool:
    return _execute(SUCCEED, succeed_params(job_id=job_id, serial=serial, result=result, now=now))[0] == 1
