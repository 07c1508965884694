"""Submitting jobs: validation against the registry and the limits, storage, dispatch on commit."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.adapters import dispatch
from jobs.adapters.store import store
from jobs.models import Job
from jobs.rules import registry
from jobs.rules.exceptions import (
    IdempotencyKeyReused,
    InternalJobType,
    InvalidBulkSubmission,
    InvalidSubmission,
    JobQueueError,
    error_detail,
)
from jobs.rules.input_limits import payload_problem
from jobs.rules.states import Priority, Status
from jobs.services import events
from jobs.services.unique import UniqueClaim, take_keys, unique_claim


def resolve_run_at(*, delay: float | None, run_at: datetime | None, now: datetime) -> datetime | None:
    """When a submission should run: None for now, else an aware datetime within the horizon."""
    if delay is not None and run_at is not None:
        raise InvalidSubmission("give either delay or run_at, not both", field="delay")
    horizon = settings.JOB_MAX_DELAY_SECONDS
    if delay is not None:
        if delay < 0:
            raise InvalidSubmission("delay must be zero or more seconds", field="delay")
        if delay > horizon:
            raise InvalidSubmission(f"delay must be at most {horizon} seconds", field="delay")
        return now + timedelta(seconds=delay) if delay > 0 else None
    if run_at is not None:
        if timezone.is_naive(run_at):
            run_at = timezone.make_aware(run_at, timezone.utc)
        if run_at > now + timedelta(seconds=horizon):
            raise InvalidSubmission(f"run_at must be within {horizon} seconds from now", field="run_at")
        return run_at
    return None


# The permission of a person who chooses the payload of an internal type's job through a surface.
SUBMIT_INTERNAL = "jobs.submit_internal_job"


def check_reachable(job_type: str, *, actor: Any) -> None:
    """The one gate of internal types (the task API's `django_task`, which runs any task of the
    deployment with the arguments given): code submits them (`actor` None: the task backend,
    `job_submit` from Python, schedules declared in code, the CLI without --as). A surface passes
    the user it acts for: a client, or staff without the permission, is refused before the
    type's validator ever sees the payload."""
    if actor is None or not registry.get(job_type).internal:
        return
    if not (actor.is_authenticated and actor.is_active and actor.is_staff and actor.has_perm(SUBMIT_INTERNAL)):
        raise InternalJobType(f"job type {job_type!r} is internal: the project's code submits it, not a client")


def validate_payload(job_type: str, payload: Any, *, owner: Any = None, actor: Any = None) -> dict:
    """The payload as the type accepts it for a job of `owner` (None: code), chosen by `actor`
    (check_reachable); raises naming what is wrong."""
    check_reachable(job_type, actor=actor)
    problem = payload_problem(payload)
    if problem:
        raise InvalidSubmission(f"payload {problem}", field="payload")
    return registry.get(job_type).validate(payload, owner=owner)


PRIORITIES = frozenset(Priority.values)


def _check_options(*, priority: str, max_retries: int | None) -> None:
    if priority not in PRIORITIES:
        raise InvalidSubmission(f"priority must be one of {', '.join(Priority.values)}", field="priority")
    if max_retries is not None and not 0 <= max_retries <= settings.JOB_MAX_RETRIES_LIMIT:
        raise InvalidSubmission(
            f"max_retries must be between 0 and {settings.JOB_MAX_RETRIES_LIMIT}", field="max_retries"
        )


def build_job(
    *,
    type: str,
    payload: dict,
    owner: Any = None,
    priority: str = Priority.MEDIUM,
    delay: float | None = None,
    run_at: datetime | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
    resubmitted_from: Job | None = None,
    now: datetime | None = None,
    actor: Any = None,
) -> Job:
    """A validated, unsaved job: every rule a submission must pass, in one place. `actor`: the
    user a surface submits for (check_reachable); None for code."""
    _check_options(priority=priority, max_retries=max_retries)
    job_type = registry.get(type)
    payload = validate_payload(type, payload, owner=owner, actor=actor)
    now = now or timezone.now()
    when = resolve_run_at(delay=delay, run_at=run_at, now=now)
    scheduled = when is not None and when > now
    return Job(
        type=type,
        payload=payload,
        owner=owner,
        priority=priority,
        status=Status.SCHEDULED if scheduled else Status.QUEUED,
        run_at=when,
        max_retries=job_type.max_retries if max_retries is None else max_retries,
        timeout=timeout or job_type.timeout,
        idempotency_key=idempotency_key or None,
        resubmitted_from=resubmitted_from,
    )


def _build(
    *, unique_for: Any = None, unique_key: Any = None, unique_if_free: bool = False, **fields: Any
) -> tuple[Job, UniqueClaim | None]:
    """`build_job` and the unique key the job asks for (jobs.services.unique)."""
    job = build_job(**fields)
    return job, unique_claim(job=job, unique_for=unique_for, unique_key=unique_key, if_free=unique_if_free)


def job_submit(*, owner: Any = None, idempotency_key: str | None = None, **fields: Any) -> tuple[Job, bool]:
    """Validate and store a job, dispatching it on commit; returns (job, created). Takes the keyword
    arguments of `build_job`, and `unique_for`, `unique_key` (see jobs.services.unique;
    `unique_if_free`: take the key only if free, never be answered with its holder). A repeated
    idempotency key of the same owner, or a unique key held by a job, returns the existing job and
    creates nothing."""
    built = _build(owner=owner, idempotency_key=idempotency_key, **fields)
    [result] = _store(built=[built], owner=owner)
    return result


def jobs_submit_many(*, submissions: list[dict], owner: Any = None, actor: Any = None) -> list[tuple[Job, bool]]:
    """Submit up to JOB_BULK_MAX jobs at once, all or nothing; returns (job, created) in order.
    Every submission is validated before anything is stored; one bad item rejects the batch with the
    errors of each item. The jobs are stored in one statement (COPY on PostgreSQL) and published in
    pipelined batches after the commit. Idempotency keys and unique keys work as for `job_submit`,
    item by item: an item whose unique key an earlier item of the batch took is answered with that
    item's job."""
    if not submissions or len(submissions) > settings.JOB_BULK_MAX:
        raise InvalidSubmission(f"give 1 to {settings.JOB_BULK_MAX} jobs", field="jobs")
    now = timezone.now()
    built, errors = [], []
    for item in submissions:
        try:
            built.append(_build(owner=owner, now=now, actor=actor, **item))
            errors.append({})
        except JobQueueError as exc:
            errors.append(error_detail(exc))
    if any(errors):
        raise InvalidBulkSubmission(details=errors)
    return _store(built=built, owner=owner)


def answered_with(*, created: bool, job: Job, idempotency_key: str | None) -> str | None:
    """Why a submit was answered with an existing job: "idempotency_key" or "unique_key"; None for
    a new job. A submit that creates nothing matched one of the two, the idempotency key first."""
    if created:
        return None
    return "idempotency_key" if idempotency_key and job.idempotency_key == idempotency_key else "unique_key"


# What a submission that repeats an idempotency key must repeat to be answered with the job it names.
SAME_SUBMISSION = ("type", "payload", "priority")
KEY_FIELDS = f"{', '.join(SAME_SUBMISSION[:-1])} or {SAME_SUBMISSION[-1]}"


def _store(*, built: list[tuple[Job, UniqueClaim | None]], owner: Any) -> list[tuple[Job, bool]]:
    """Store new jobs, (job, True); a job whose idempotency key its owner already used, or whose
    unique key a job holds, is the existing one, (job, False). The one algorithm of idempotency
    and uniqueness, for one job or many."""
    try:
        return _store_many(built, owner=owner)
    except IntegrityError:
        # Another request stored one of the keys meanwhile: the second pass finds it.
        return _store_many(built, owner=owner)


def _store_many(built: list[tuple[Job, UniqueClaim | None]], *, owner: Any) -> list[tuple[Job, bool]]:
    keys = {job.idempotency_key for job, _ in built if job.idempotency_key}
    known = (
        {job.idempotency_key: job for job in Job.objects.filter(owner=owner, idempotency_key__in=keys)} if keys else {}
    )
    results: list[tuple[Job, bool]] = []
    fresh: list[Job] = []
    claimed: list[tuple[Job, UniqueClaim]] = []
    for job, claim in built:
        key = job.idempotency_key
        if key and key in known:
            if any(getattr(known[key], name) != getattr(job, name) for name in SAME_SUBMISSION):
                raise IdempotencyKeyReused(f"idempotency key {key!r} was used for a job of another {KEY_FIELDS}")
            results.append((known[key], False))
            continue
        if key:
            known[key] = job
        fresh.append(job)
        results.append((job, True))
        if claim is not None:
            claimed.append((job, claim))
    with transaction.atomic():
        if claimed:
            answers = take_keys(claimed, now=timezone.now())
            fresh = [job for job in fresh if job.id not in answers]
            results = [(answers.get(job.id, job), created and job.id not in answers) for job, created in results]
            for job, _ in claimed:
                if job.id in answers:
                    events.answered_by_unique(events.JobFacts(answers[job.id].id, job.type, job.priority, 0))
        if fresh:
            store().insert_jobs(fresh)
        dispatch.send_jobs_on_commit(
            (job.id, job.priority, job.timeout, job.type) for job in fresh if job.status == Status.QUEUED
        )
        for job in fresh:
            events.submitted(events.JobFacts(job.id, job.type, job.priority, 0), status=str(job.status))
    return results
