"""The hot path on PostgreSQL: claim and finish an attempt in one statement each.

Each statement updates the job under the same guard as `_transition` (allowed sources from
the state machine, plus the attempt's serial; a claim also skips a paused queue) and writes
the attempt history in the same round trip with a data-modifying CTE. Other databases use
the ORM path in lifecycle.py.
"""

import json
from datetime import datetime
from typing import Any

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
    WHERE id = %(id)s AND status = ANY(%(sources)s)
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
    WHERE id = %(id)s AND status = ANY(%(sources)s) AND attempts_total = %(serial)s
    RETURNING id
), closed AS (
    UPDATE {ATTEMPT} SET outcome = %(outcome)s, finished_at = %(now)s
    WHERE job_id IN (SELECT id FROM done) AND number = %(serial)s
)
SELECT count(*) FROM done
"""


def _sources(to: Status, expected: Status) -> list[str]:
    """The guard: the expected source, if the state machine allows it."""
    return [str(s) for s in sources_of(to) & {expected}]


def claim(*, job_id: Any, worker: str, now: datetime, lease: datetime) -> tuple | None:
    """(type, payload, attempt, serial, timeout, queue) of the claimed job, or None."""
    params = {
        "to": Status.RUNNING,
        "sources": _sources(Status.RUNNING, Status.QUEUED),
        "id": job_id,
        "now": now,
        "worker": worker,
        "lease": lease,
        "outcome": Outcome.RUNNING,
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, params)
        row = cursor.fetchone()
    if row is None:
        return None
    job_type, payload, attempt, serial, timeout, queue = row
    # Django's PostgreSQL backend hands jsonb over as text; its JSONField decodes it, so do we.
    return job_type, json.loads(payload) if isinstance(payload, str) else payload, attempt, serial, timeout, queue


def succeed(*, job_id: Any, serial: int, result: Any, now: datetime) -> bool:
    params = {
        "to": Status.SUCCEEDED,
        "sources": _sources(Status.SUCCEEDED, Status.RUNNING),
        "id": job_id,
        "serial": serial,
        "now": now,
        "outcome": Outcome.SUCCEEDED,
        "result": None if result is None else Jsonb(result),
    }
    with connection.cursor() as cursor:
        cursor.execute(SUCCEED, params)
        return cursor.fetchone()[0] == 1
