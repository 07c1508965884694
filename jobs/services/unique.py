"""Unique jobs: while a job holds a unique key, a submit with the same key is answered with it.

A key is the sha256 of the job's type, its owner and its material: the whole payload (canonical
JSON: sorted keys, compact), the values of the payload fields named by `unique_key`, or an explicit
string `unique_key`. Uniqueness is on when `unique_for` is given, by the submit or its type. The key
stays taken while its job is unfinished (status not in jobs.rules.states.FINISHED) and for `unique_for`
seconds after the job finished.

The database enforces it: the key is a primary key (UniqueJobKey), inserted in the submit's
transaction with ON CONFLICT DO NOTHING, so of two racing submits one inserts and the other waits
for its commit and then finds the key held. A key whose job finished longer ago than its window is
taken over under a row lock. Release is lazy: nothing happens when a job finishes."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from jobs.adapters.store import store
from jobs.models import Job, UniqueJobKey
from jobs.rules import registry
from jobs.rules.exceptions import InvalidSubmission, UniqueKeyContended
from jobs.rules.states import FINISHED

# How often a submit tries again when the job holding its key is deleted under it.
TAKE_ATTEMPTS = 5
MAX_EXPLICIT_KEY = 255


@dataclass(frozen=True)
class UniqueClaim:
    """The key a new job asks for; `if_free`: take it only if free, never be answered with its holder."""

    key: str
    unique_for: int
    if_free: bool = False


def unique_claim(
    *, job: Job, unique_for: Any = None, unique_key: Any = None, if_free: bool = False
) -> UniqueClaim | None:
    """The key of a built job, or None when neither the submit nor its type asks for uniqueness;
    raises InvalidSubmission naming the field."""
    job_type = registry.get(job.type)
    window = job_type.unique_for if unique_for is None else unique_for
    if window is None:
        if unique_key is not None:
            raise InvalidSubmission("unique_key needs unique_for, on the submit or its type", field="unique_key")
        return None
    _check_window(window)
    material = _material(job.payload, job_type.unique_key if unique_key is None else unique_key)
    text = json.dumps([job.type, job.owner_id, material], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return UniqueClaim(hashlib.sha256(text.encode()).hexdigest(), window, if_free)


def _check_window(window: Any) -> None:
    limit = settings.JOB_UNIQUE_MAX_SECONDS
    if isinstance(window, bool) or not isinstance(window, int):
        raise InvalidSubmission("unique_for must be a whole number of seconds", field="unique_for")
    if not 0 <= window <= limit:
        raise InvalidSubmission(f"unique_for must be between 0 and {limit} seconds", field="unique_for")


def _material(payload: dict, unique_key: Any) -> dict:
    """What the key is made of besides type and owner."""
    if unique_key is None:
        return {"payload": payload}
    if isinstance(unique_key, str):
        if not 1 <= len(unique_key) <= MAX_EXPLICIT_KEY:
            raise InvalidSubmission(f"unique_key must have 1 to {MAX_EXPLICIT_KEY} characters", field="unique_key")
        _check_text([unique_key])
        return {"key": unique_key}
    if not isinstance(unique_key, list | tuple) or not unique_key or not all(isinstance(f, str) for f in unique_key):
        raise InvalidSubmission("unique_key must be a string or a list of payload field names", field="unique_key")
    _check_text(unique_key)
    missing = [field for field in unique_key if field not in payload]
    if missing:
        raise InvalidSubmission(f"unique_key names {', '.join(missing)}, which the payload lacks", field="unique_key")
    return {"fields": {field: payload[field] for field in unique_key}}


def _check_text(texts: Any) -> None:
    """Refuse a lone surrogate (JSON's "\\ud800"): no UTF-8 answer could name it back."""
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError:
        raise InvalidSubmission("unique_key contains text that is not valid Unicode", field="unique_key") from None


def holds(*, job: Job, unique_for: int, now: datetime) -> bool:
    """Whether `job` still holds its key: unfinished, or finished less than `unique_for` seconds ago."""
    if job.status not in FINISHED:
        return True
    finished = job.finished_at or job.updated_at  # a cancelled job has no finished_at
    return now < finished + timedelta(seconds=unique_for)


def take_keys(claimed: list[tuple[Job, UniqueClaim]], *, now: datetime) -> dict[Any, Job]:
    """Take the key of each new job, in the submit's transaction; returns {new job's id: the job
    it is answered with} for those whose key is held (they must not be stored). Two jobs of one
    batch with the same key: the second is answered with the first's answer."""
    first: dict[str, tuple[Job, UniqueClaim]] = {}
    repeats: list[tuple[Job, Job]] = []
    for job, claim in claimed:
        if claim.key in first:
            repeats.append((job, first[claim.key][0]))
        else:
            first[claim.key] = (job, claim)
    answers = _take(first, now=now)
    for job, earlier in repeats:
        answers[job.id] = answers.get(earlier.id, earlier)
    return answers


def _take(pending: dict[str, tuple[Job, UniqueClaim]], *, now: datetime) -> dict[Any, Job]:
    answers: dict[Any, Job] = {}
    for _ in range(TAKE_ATTEMPTS):
        rows = [(key, job.id, claim.unique_for, now) for key, (job, claim) in sorted(pending.items())]
        taken = store().insert_unique_keys(rows)
        held = {key: value for key, value in pending.items() if key not in taken}
        if not held:
            return answers
        pending = _settle(held, answers, now=now)
        if not pending:
            return answers
    raise UniqueKeyContended()


def _settle(
    held: dict[str, tuple[Job, UniqueClaim]], answers: dict[Any, Job], *, now: datetime
) -> dict[str, tuple[Job, UniqueClaim]]:
    """Decide the keys someone holds: answer with a holder that still holds; take over from one
    whose window is over. Returns the keys whose row vanished (their job deleted meanwhile), to
    insert again. Read without a lock first: a holder that still holds answers as it is (a
    duplicate creates nothing, so no race can make a second job of it); only take-overs lock."""
    rows = store().unique_holders(sorted(held))
    vanished, over = {}, {}
    for key, (job, claim) in held.items():
        if key not in rows:
            vanished[key] = (job, claim)
        elif holds(job=rows[key][1], unique_for=rows[key][0], now=now):
            if not claim.if_free:
                answers[job.id] = rows[key][1]
        else:
            over[key] = (job, claim)
    if over:
        vanished.update(_take_over(over, answers, now=now))
    return vanished


def _take_over(
    over: dict[str, tuple[Job, UniqueClaim]], answers: dict[Any, Job], *, now: datetime
) -> dict[str, tuple[Job, UniqueClaim]]:
    """Take over keys whose holder's window seemed over, their rows locked in key order: the first
    submit to lock one takes it; the others, once it commits, find the new holder and answer with it."""
    locked = UniqueJobKey.objects.select_for_update().filter(key__in=sorted(over)).order_by("key")
    rows = {key: (job_id, window) for key, job_id, window in locked.values_list("key", "job_id", "unique_for")}
    # A statement of its own, after the lock: it sees the holder a concurrent take-over committed.
    holders = Job.objects.in_bulk([job_id for job_id, _ in rows.values()])
    vanished = {}
    for key, (job, claim) in over.items():
        if key not in rows:
            vanished[key] = (job, claim)
            continue
        holder = holders.get(rows[key][0])
        if holder is not None and holds(job=holder, unique_for=rows[key][1], now=now):
            if not claim.if_free:
                answers[job.id] = holder
            continue
        UniqueJobKey.objects.filter(key=key).update(job_id=job.id, unique_for=claim.unique_for, taken_at=now)
    return vanished
