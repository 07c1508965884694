"""Reads of jobs that are more than a lookup: filters, search, dashboard counts, queue stats."""

import contextlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast, Replace, TruncMinute
from django.utils import timezone

from jobs.adapters import broker, internals
from jobs.adapters.store import store
from jobs.adapters.unavailable import BROKER_ERRORS
from jobs.models import Job, JobArtifact, JobAttempt, Outcome, QueueSample, QueueState, Schedule, ScheduleRun
from jobs.rules import permissions
from jobs.rules.exceptions import JobNotFound, ScheduleNotFound
from jobs.rules.states import QUEUES, WAITING_FOR_LIMIT, WAITING_FOR_TIME, Status

log = logging.getLogger("jobqueue.jobs")

# Attempt outcomes that count as processed, and those of them that count as failed.
PROCESSED_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.LOST)
FAILED_OUTCOMES = (Outcome.FAILED, Outcome.LOST)


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """Staff who may view jobs see every job; everyone else (other staff too) only their own."""
    if permissions.may_view_every_job(user):
        return Job.objects.all()
    return Job.objects.filter(owner=user)


def job_for_user(*, job_id: Any, user: Any) -> Job:
    """The job, if `user` may see it; another owner's job is reported as missing."""
    return job_by_id(job_id=job_id, among=jobs_visible_to(user))


def job_artifact(*, job_id: Any, name: str, user: Any) -> JobArtifact:
    """A file the job made, if `user` may see the job; missing otherwise, as for the job itself."""
    job = job_for_user(job_id=job_id, user=user)
    artifact = JobArtifact.objects.filter(job=job, name=name).first()
    if artifact is None:
        raise JobNotFound(f"job {job.pk} has no file named {name!r}")
    return artifact


def with_empty_history(job: Job) -> Job:
    """A job just created, its history (empty) known without a query."""
    history = JobAttempt.objects.none()
    # Marked evaluated as Django's prefetching marks what it fetched: iterating a bare .none()
    # still compiles its SQL, which cost a tenth of a single submission.
    internals.mark_fetched_empty(history)
    internals.set_prefetched(job, "history", history)
    return job


def as_answered(job: Job) -> Job:
    """A job to answer a submit with: one that no attempt has started yet (serial 0, a new job or a
    waiting one) has an empty history, known without a query."""
    return with_empty_history(job) if job.serial == 0 else job


def job_by_id(*, job_id: Any, among: QuerySet[Job] | None = None) -> Job:
    """The job with its attempt history; JobNotFound for an unknown id or one not `among` these."""
    try:
        return (Job.objects if among is None else among).prefetch_related("history").get(pk=uuid.UUID(str(job_id)))
    except (Job.DoesNotExist, ValueError):
        raise JobNotFound(f"no job with id {job_id}") from None


def jobs_search(jobs: QuerySet[Job], term: str) -> QuerySet[Job]:
    """Jobs whose id, type, error, reason or payload contains `term`, ignoring case."""
    term = term.strip()
    if not term:
        return jobs
    # The id without its dashes: SQLite stores UUIDs as bare hex, PostgreSQL prints them dashed.
    bare_id = Replace(Cast("id", TextField()), Value("-"), Value(""), output_field=TextField())
    jobs = jobs.annotate(id_text=bare_id, payload_text=Cast("payload", TextField()))
    match = Q(id_text__icontains=term.replace("-", "")) | Q(payload_text__icontains=term) | Q(type__icontains=term)
    match |= Q(error_type__icontains=term) | Q(error_message__icontains=term) | Q(reason__icontains=term)
    with contextlib.suppress(ValueError):
        match |= Q(pk=uuid.UUID(term))  # a whole id: found by the primary key
    return jobs.filter(match)


def jobs_filtered(
    *,
    status: str | None = None,
    type: str | None = None,
    priority: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    search: str | None = None,
) -> QuerySet[Job]:
    """Jobs matching every filter given, newest first."""
    jobs = Job.objects.select_related("owner")
    for name, value in (("status", status), ("type", type), ("priority", priority)):
        if value:
            jobs = jobs.filter(**{name: value})
    if created_after:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs_search(jobs, search or "").order_by("-created_at")


def status_counts() -> dict[str, int]:
    """Jobs per status, every status listed."""
    counts = dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in Status.values}


def _from_broker(read: Any, what: str, default: Any = None) -> Any:
    """What `read()` reads from Redis, or `default` (and a warning) when Redis does not answer."""
    try:
        return read()
    except BROKER_ERRORS as exc:
        log.warning("cannot read %s: %s", what, exc)
        return default


def queue_overview() -> list[dict]:
    """Per queue: paused or not, messages in Redis, queued and running jobs, and latency. Latency is
    the age of the oldest job waiting in the queue (since it was last queued); `depth` is None when
    Redis does not answer."""
    now = timezone.now()
    depths = _from_broker(broker.queue_lengths, "queue lengths", dict.fromkeys(QUEUES))
    states = {state.name: state for state in QueueState.objects.all()}
    active = Job.objects.filter(status__in=(Status.QUEUED, Status.RUNNING)).values("priority", "status")
    rows = active.annotate(n=Count("id"), oldest=Min("updated_at"))
    found = {(row["priority"], row["status"]): row for row in rows}
    overview = []
    for name in QUEUES:
        state = states.get(name)
        waiting = found.get((name, Status.QUEUED), {})
        oldest = waiting.get("oldest")
        overview.append(
            {
                "name": name,
                "paused": bool(state and state.paused),
                "changed_at": state.changed_at if state else None,
                "changed_by": state.changed_by if state else "",
                "depth": depths.get(name),
                "queued": waiting.get("n", 0),
                "running": found.get((name, Status.RUNNING), {}).get("n", 0),
                "latency_seconds": round(_waited(now, oldest), 3),
            }
        )
    return overview


def throughput_per_minute(*, minutes: int = 60, now: datetime | None = None) -> list[dict]:
    """Attempts finished per minute over the last `minutes` (oldest first): processed, succeeded and
    failed. Processed counts succeeded, failed and lost attempts; failed counts failed and lost
    ones."""
    end = (now or timezone.now()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    buckets = {start + timedelta(minutes=i): {"processed": 0, "failed": 0} for i in range(minutes)}
    rows = (
        JobAttempt.objects.filter(finished_at__gte=start, finished_at__lt=end, outcome__in=PROCESSED_OUTCOMES)
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute", "outcome")
        .annotate(n=Count("id"))
    )
    for row in rows:
        bucket = buckets[row["minute"]]
        bucket["processed"] += row["n"]
        if row["outcome"] in FAILED_OUTCOMES:
            bucket["failed"] += row["n"]
    return [
        {"minute": minute, **counts, "succeeded": counts["processed"] - counts["failed"]}
        for minute, counts in buckets.items()
    ]


def workers_online() -> list[str] | None:
    """Worker nodes whose heartbeat in Redis is fresh; None when Redis cannot be asked."""
    return _from_broker(broker.workers_online, "worker heartbeats")


def dead_letter_length() -> int | None:
    return _from_broker(broker.dead_letter_length, "the dead-letter list")


def job_stats(*, with_workers: bool = True) -> dict:
    """Everything an operator checks first: statuses, queues, dead letters, workers, the last hour."""
    last_hour = throughput_per_minute(minutes=60)
    return {
        "statuses": status_counts(),
        "queues": queue_overview(),
        "dead_letter": dead_letter_length(),
        "workers": workers_online() if with_workers else None,
        "last_hour": {key: sum(minute[key] for minute in last_hour) for key in ("processed", "succeeded", "failed")},
    }


ALL_OWNERS = object()


def counts_by_type_and_status(*, since: datetime, until: datetime, owner_id: Any = ALL_OWNERS) -> list[dict]:
    """Jobs created in [since, until) by type and status; of one owner's jobs if `owner_id` is
    given (None: jobs submitted without an owner)."""
    jobs = Job.objects.filter(created_at__gte=since, created_at__lt=until)
    if owner_id is not ALL_OWNERS:
        jobs = jobs.filter(owner_id=owner_id)
    rows = jobs.values("type", "status").annotate(count=Count("id")).order_by("type", "status")
    return list(rows)


def job_owner(*, job_id: Any) -> tuple[Any, bool]:
    """(owner id, whether the owner may view every job) of a job; (None, True) for a job without
    an owner, submitted from Python, the CLI or a schedule by an operator."""
    owner = job_owner_user(job_id=job_id)
    if owner is None:
        return None, True
    return owner.pk, permissions.may_view_every_job(owner)


def running_serial(*, job_id: Any, worker: str) -> int | None:
    """The serial of a job's attempt running on node `worker`, or None if it does not run there:
    a report from a node about its own attempt never reaches another node's newer one."""
    rows = Job.objects.filter(pk=job_id, status=Status.RUNNING, worker=worker)
    return rows.values_list("serial", flat=True).first()


def attempts_current(attempts: list[tuple[str, int]]) -> dict[str, tuple[str, int, str]]:
    """job id -> (status, serial, reason) of the jobs of `attempts`, (job id, serial): whether each
    attempt still holds its job (tasks.fence)."""
    rows = Job.objects.filter(pk__in=[job_id for job_id, _ in attempts]).values_list("pk", "status", "serial", "reason")
    return {str(pk): (status, serial, reason) for pk, status, serial, reason in rows}


def running_on(*, worker: str) -> list[tuple[Any, int]]:
    """(job id, serial) of the jobs running on a worker node."""
    return list(Job.objects.filter(status=Status.RUNNING, worker=worker).values_list("pk", "serial"))


def next_due_at() -> datetime | None:
    """When the earliest scheduled or retrying job is due, or a rate limit's window frees for a
    waiting one."""
    times = [
        Job.objects.filter(status__in=statuses, run_at__isnull=False)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
        for statuses in (WAITING_FOR_TIME, WAITING_FOR_LIMIT)
    ]
    return min((when for when in times if when is not None), default=None)


def next_schedule_tick_at() -> datetime | None:
    """When the earliest tick of an enabled schedule is due."""
    due = Schedule.objects.filter(enabled=True, next_tick_at__isnull=False)
    return due.order_by("next_tick_at").values_list("next_tick_at", flat=True).first()


def queue_latencies(*, now: datetime) -> dict[str, float]:
    """Seconds the oldest queued job of each queue has waited since it was queued (0 for none)."""
    oldest = dict(
        Job.objects.filter(status=Status.QUEUED)
        .values_list("priority")
        .annotate(oldest=Min("updated_at"))
        .values_list("priority", "oldest")
    )
    return {queue: _waited(now, oldest.get(queue)) for queue in QUEUES}


def _waited(now: datetime, since: datetime | None) -> float:
    """Queue latency: seconds since the oldest waiting job was queued (0 when none waits)."""
    return max((now - since).total_seconds(), 0.0) if since else 0.0


def scheduled_count() -> int:
    """Jobs waiting for their run_at (status scheduled)."""
    return Job.objects.filter(status=Status.SCHEDULED).count()


def running_jobs(*, limit: int = 50, now: datetime | None = None) -> list[dict]:
    """The jobs running now, longest running first: worker, seconds since the current attempt
    started, and progress."""
    now = now or timezone.now()
    attempt_start = JobAttempt.objects.filter(job=OuterRef("pk"), number=OuterRef("serial")).values("started_at")
    rows = (
        Job.objects.filter(status=Status.RUNNING)
        .annotate(attempt_started_at=Subquery(attempt_start[:1]))
        .order_by("attempt_started_at")
        .values("id", "type", "priority", "worker", "attempts", "progress", "progress_message", "attempt_started_at")
    )
    return [{**row, "elapsed_seconds": _waited(now, row["attempt_started_at"])} for row in rows[:limit]]


def scheduled_jobs(*, limit: int = 50, now: datetime | None = None) -> list[dict]:
    """The jobs waiting for their run_at (status scheduled), soonest first, with seconds until then."""
    now = now or timezone.now()
    rows = Job.objects.filter(status=Status.SCHEDULED).order_by("run_at").values("id", "type", "priority", "run_at")
    return [{**row, "due_in_seconds": _waited(row["run_at"], now) if row["run_at"] else 0.0} for row in rows[:limit]]


def type_stats(*, minutes: int = 60, now: datetime | None = None) -> list[dict]:
    """Per job type over the last `minutes`: attempts succeeded and failed (failed or lost), jobs
    that died, attempts finished per minute, the failure rate, and the p50 and p95 durations
    (seconds) of the attempts that succeeded or failed."""
    end = now or timezone.now()
    start = end - timedelta(minutes=minutes)
    attempts = (
        JobAttempt.objects.filter(finished_at__gte=start, finished_at__lt=end, outcome__in=PROCESSED_OUTCOMES)
        .values_list("job__type", "outcome")
        .annotate(n=Count("id"))
    )
    died = Job.objects.filter(status=Status.DEAD, finished_at__gte=start, finished_at__lt=end)
    dead = dict(died.values_list("type").annotate(n=Count("id")).values_list("type", "n"))
    percentiles = store().duration_percentiles(since=start, until=end, fractions=(0.5, 0.95))
    counts: dict[str, dict[str, int]] = {}
    for job_type, outcome, n in attempts:
        kind = "failed" if outcome in FAILED_OUTCOMES else "succeeded"
        counts.setdefault(job_type, {"succeeded": 0, "failed": 0})[kind] += n
    stats = []
    for job_type in sorted(counts.keys() | dead.keys()):
        succeeded, failed = counts.get(job_type, {}).get("succeeded", 0), counts.get(job_type, {}).get("failed", 0)
        finished = succeeded + failed
        p50, p95 = percentiles.get(job_type, (None, None))
        stats.append(
            {
                "type": job_type,
                "succeeded": succeeded,
                "failed": failed,
                "dead": dead.get(job_type, 0),
                "per_minute": finished / minutes,
                "failure_rate": failed / finished if finished else None,
                "p50_seconds": p50,
                "p95_seconds": p95,
            }
        )
    return stats


def queue_history(*, minutes: int = 60, now: datetime | None = None) -> dict[str, list[QueueSample]]:
    """The mover's samples of each queue over the last `minutes`, oldest first; every queue listed."""
    since = (now or timezone.now()) - timedelta(minutes=minutes)
    history: dict[str, list[QueueSample]] = {queue: [] for queue in QUEUES}
    for sample in QueueSample.objects.filter(at__gte=since).order_by("at"):
        history.setdefault(sample.queue, []).append(sample)
    return history


# Recurring jobs


def schedules_overview(schedules: QuerySet[Schedule] | None = None) -> QuerySet[Schedule]:
    """Schedules with their last run: `last_run_tick_at`, `last_run_outcome`, `last_run_job_id`
    and `last_run_job_status` (None before the first run); `next_tick_at` is the next run."""
    latest = ScheduleRun.objects.filter(schedule=OuterRef("pk")).order_by("-tick_at")
    schedules = Schedule.objects.all() if schedules is None else schedules
    return schedules.annotate(
        last_run_tick_at=Subquery(latest.values("tick_at")[:1]),
        last_run_outcome=Subquery(latest.values("outcome")[:1]),
        last_run_job_id=Subquery(latest.values("job_id")[:1]),
        last_run_job_status=Subquery(latest.values("job__status")[:1]),
    )


def schedule_by_name(*, name: str) -> Schedule:
    """The schedule `name`; raises ScheduleNotFound."""
    try:
        return Schedule.objects.get(name=name)
    except Schedule.DoesNotExist:
        raise ScheduleNotFound(f"no schedule named {name!r}") from None


def schedule_runs(*, schedule: Schedule, limit: int | None = 100) -> QuerySet[ScheduleRun]:
    """The runs of a schedule, newest tick first, with their jobs' status."""
    runs = ScheduleRun.objects.filter(schedule=schedule).select_related("job").order_by("-tick_at")
    return runs[:limit] if limit else runs


def schedule_with_last_run(*, name: str) -> Schedule:
    """The schedule `name` with its last run, as schedules_overview annotates it; raises ScheduleNotFound."""
    schedule = schedules_overview(Schedule.objects.filter(name=name)).first()
    if schedule is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return schedule


def jobs_submitted_since(*, owner: Any, types: tuple[str, ...], since: datetime) -> int:
    """How many jobs of `types` the user `owner` submitted since `since` (the mail volume's count)."""
    return Job.objects.filter(owner=owner, created_at__gte=since, type__in=types).count()


def job_owner_user(*, job_id: Any) -> Any:
    """The user who owns the job; None for a job of code's (or one no longer there)."""
    job = Job.objects.select_related("owner").filter(pk=job_id).only("owner").first()
    return job.owner if job is not None else None
