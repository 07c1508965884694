"""Recurring jobs: creating, changing and firing schedules.

A due tick becomes an ordinary job through the submit path (validation, dispatch on commit,
metrics). Movers take due schedules with FOR UPDATE SKIP LOCKED, so any number of them split the
work; the (schedule, tick_at) unique constraint of ScheduleRun is the last guard that makes each
tick fire at most once."""

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone as dj_timezone

from jobs.adapters import metrics
from jobs.models import Job, MissedPolicy, OverlapPolicy, Schedule, ScheduleRun, ScheduleSource, TickOutcome
from jobs.rules import recurrence, registry
from jobs.rules.exceptions import InternalJobType, InvalidSubmission, JobQueueError, ScheduleNotFound, UnknownJobType
from jobs.rules.input_limits import name_problem
from jobs.rules.states import FINISHED, Priority
from jobs.services.submit import _check_options, _store, build_job, validate_payload

log = logging.getLogger("jobqueue.schedules")

# The fields a schedule is made of, as schedule_create takes them.
FIELDS = (
    "name",
    "job_type",
    "payload",
    "priority",
    "max_retries",
    "cron",
    "interval_seconds",
    "timezone",
    "enabled",
    "missed",
    "catch_up_seconds",
    "overlap",
)
# What a declaration in code sets: not its name (the key) nor enabled (an operator's pause stays).
DECLARED = [key for key in FIELDS if key not in ("name", "enabled")]
# Changing one of these moves the schedule's next tick.
TIMING = ("cron", "interval_seconds", "timezone")
# Missed cron ticks further back than this before the firing window are neither recorded nor counted:
# an outage of weeks costs one bounded scan, not one step per minute that passed (intervals are counted).
MISSED_SCAN = timedelta(days=1)
RETRY_BROKEN = timedelta(minutes=1)


class ScheduleReadOnly(JobQueueError):
    """This schedule is defined in code: change it in its declaration; it can only be paused or resumed here."""

    field = "source"


@dataclass
class SyncResult:
    """What schedules_sync_code changed, by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Declared in code under the name of a schedule made at run time: left alone.
    conflicts: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else dj_timezone.now()


def _clean(values: dict[str, Any], *, actor: Any = None) -> dict[str, Any]:
    """The schedule's fields validated, each error naming its field; `actor` chose its job type and
    payload (jobs.services.submit.check_reachable)."""
    name = values["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InvalidSubmission("name must have 1 to 100 characters", field="name")
    try:
        registry.get(values["job_type"])
    except UnknownJobType as exc:
        raise InvalidSubmission(exc.message, field="job_type") from None
    payload = {} if values["payload"] is None else values["payload"]
    try:
        payload = validate_payload(values["job_type"], payload, actor=actor)
    except InternalJobType as exc:
        raise InternalJobType(exc.message, field="job_type") from None
    _check_options(priority=values["priority"], max_retries=values["max_retries"])
    cron, interval = values["cron"] or "", values["interval_seconds"]
    if bool(cron) == (interval is not None):
        raise InvalidSubmission("give either cron or interval_seconds, exactly one", field="cron")
    if cron:
        cron = recurrence.validate_cron(cron)
    else:
        recurrence.validate_interval(interval)
    recurrence.zone(values["timezone"])
    if not isinstance(values["enabled"], bool):
        raise InvalidSubmission("enabled must be true or false", field="enabled")
    for key, choices in (("missed", MissedPolicy), ("overlap", OverlapPolicy)):
        if values[key] not in choices.values:
            raise InvalidSubmission(f"{key} must be one of {', '.join(choices.values)}", field=key)
    catch_up = values["catch_up_seconds"]
    if catch_up is not None and (
        isinstance(catch_up, bool) or not isinstance(catch_up, int) or not 1 <= catch_up <= recurrence.LONGEST_INTERVAL
    ):
        raise InvalidSubmission(
            f"catch_up_seconds must be a whole number of seconds from 1 to {recurrence.LONGEST_INTERVAL}",
            field="catch_up_seconds",
        )
    if values["missed"] == MissedPolicy.ALL_WITHIN and catch_up is None:
        raise InvalidSubmission("missed=all_within needs catch_up_seconds, its window", field="catch_up_seconds")
    return {**values, "name": name.strip(), "payload": payload, "cron": cron}


def _first_tick(schedule: Schedule, *, now: datetime) -> datetime:
    """The schedule's first tick after now: an interval grid starts one interval from now."""
    if schedule.interval_seconds:
        return recurrence.first_interval_tick(interval_seconds=schedule.interval_seconds, now=now)
    return recurrence.next_tick(cron=schedule.cron, tz=schedule.timezone, after=now)


def _next_after(schedule: Schedule, *, after: datetime) -> datetime:
    """The schedule's next tick after `after`, on the grid its next_tick_at anchors."""
    anchor = schedule.next_tick_at
    if schedule.interval_seconds and anchor is None:
        return _first_tick(schedule, now=after)
    return recurrence.next_tick(
        cron=schedule.cron, interval_seconds=schedule.interval_seconds, tz=schedule.timezone, anchor=anchor, after=after
    )


def schedule_create(
    *,
    name: str,
    job_type: str,
    payload: dict | None = None,
    priority: str = Priority.MEDIUM,
    max_retries: int | None = None,
    cron: str = "",
    interval_seconds: int | None = None,
    timezone: str = "UTC",
    enabled: bool = True,
    missed: str = MissedPolicy.SKIP,
    catch_up_seconds: int | None = None,
    overlap: str = OverlapPolicy.ALLOW,
    source: str = ScheduleSource.RUNTIME,
    now: datetime | None = None,
    actor: Any = None,
) -> Schedule:
    """A new schedule, validated; its first tick is the first after now. Raises naming the field.
    Its name is one URL segment (jobs.rules.input_limits.SLUG_NAME); a schedule named before that rule keeps
    its name and stays editable (`_clean` checks only the length, names never change).
    `actor`: the user a surface creates it for (None: code)."""
    problem = name_problem(name, "schedule")
    if problem:
        raise InvalidSubmission(problem, field="name")
    arguments = locals()
    values = _clean({key: arguments[key] for key in FIELDS}, actor=actor)
    if source not in ScheduleSource.values:
        raise InvalidSubmission(f"source must be one of {', '.join(ScheduleSource.values)}", field="source")
    schedule = Schedule(**values, source=source)
    schedule.next_tick_at = _first_tick(schedule, now=_now(now))
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        if Schedule.objects.filter(name=values["name"]).exists():
            raise InvalidSubmission(f"a schedule named {values['name']!r} exists already", field="name") from None
        raise
    log.info("schedule %s created: %s, next tick %s", schedule.name, schedule, schedule.next_tick_at.isoformat())
    return schedule


def _apply(schedule: Schedule, changes: dict[str, Any], *, now: datetime, actor: Any) -> Schedule:
    """Change the fields of `changes` on the schedule's row, locked and read afresh; the row as
    saved. The caller's copy may be older than the mover's last firing: only the fields edited (and
    the next tick, when the timing changed or the schedule resumes) are written, never the mover's
    progress as the copy had it. The mover skips the row while it is locked."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InvalidSubmission(f"a schedule has no field {unknown[0]!r}", field=unknown[0])
    try:
        with transaction.atomic():
            locked = Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
            if locked is None:
                raise ScheduleNotFound(f"no schedule named {schedule.name!r}")
            _apply_locked(locked, changes, now=now, actor=actor)
    except IntegrityError:
        name = str(changes.get("name", schedule.name)).strip()
        raise InvalidSubmission(f"a schedule named {name!r} exists already", field="name") from None
    return locked


def _apply_locked(schedule: Schedule, changes: dict[str, Any], *, now: datetime, actor: Any) -> None:
    current = {key: getattr(schedule, key) for key in FIELDS}
    if "cron" in changes and changes["cron"] and "interval_seconds" not in changes:
        current["interval_seconds"] = None  # switching to cron
    if changes.get("interval_seconds") is not None and "cron" not in changes:
        current["cron"] = ""  # switching to an interval
    # Whoever chooses the job type or the payload answers for them; the rest keeps what was chosen.
    values = _clean({**current, **changes}, actor=actor if {"job_type", "payload"} & set(changes) else None)
    retimed = any(values[key] != current_value for key, current_value in _timing(schedule).items())
    resumed = values["enabled"] and not schedule.enabled
    written = [key for key, value in values.items() if value != getattr(schedule, key)]
    for key in written:
        setattr(schedule, key, values[key])
    if retimed:
        schedule.next_tick_at = None  # a new grid
        schedule.next_tick_at = _first_tick(schedule, now=now)
    elif resumed:
        schedule.next_tick_at = _next_after(schedule, after=now)
    if retimed or resumed:
        written.append("next_tick_at")
    schedule.save(update_fields=[*written, "updated_at"])


def _timing(schedule: Schedule) -> dict[str, Any]:
    return {key: getattr(schedule, key) for key in TIMING}


def schedule_update(*, schedule: Schedule, now: datetime | None = None, actor: Any = None, **changes: Any) -> Schedule:
    """Change a run-time schedule's fields (those of schedule_create but `source`); a change of its
    cron, interval or time zone starts it again from now. A code-defined schedule may only be
    paused or resumed (`enabled`): anything else raises ScheduleReadOnly. `actor` as for
    schedule_create, when the job type or payload changes."""
    if schedule.source == ScheduleSource.CODE and set(changes) - {"enabled"}:
        raise ScheduleReadOnly(f"schedule {schedule.name!r} is defined in code; only enabled can change here")
    return _apply(schedule, changes, now=_now(now), actor=actor)


def schedule_pause(*, schedule: Schedule) -> Schedule:
    """Stop firing the schedule (any source) until it is resumed."""
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False, updated_at=dj_timezone.now())
    schedule.enabled = False
    log.info("schedule %s paused", schedule.name)
    return schedule


def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    """Fire the schedule again from its first tick after now: the ticks of the pause are not caught up."""
    now = _now(now)
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if not locked.enabled:
            locked.next_tick_at = _next_after(locked, after=now)
            locked.enabled = True
            locked.save(update_fields=["enabled", "next_tick_at", "updated_at"])
    schedule.enabled, schedule.next_tick_at = True, locked.next_tick_at
    log.info("schedule %s resumed, next tick %s", schedule.name, schedule.next_tick_at.isoformat())
    return schedule


def schedule_trigger(*, schedule: Schedule, now: datetime | None = None) -> Job:
    """Run the schedule's job now, as an ordinary job linked to a run whose tick is now; the
    schedule's next tick stays where it is."""
    now = _now(now)
    job = _build(schedule, now=now)
    with transaction.atomic():
        [job] = _store_jobs([job])
        ScheduleRun.objects.create(
            schedule=schedule, tick_at=now, outcome=TickOutcome.FIRED, job=job, recorded_at=now, lateness_seconds=0.0
        )
    log.info("schedule %s run now: job %s", schedule.name, job.id)
    return job


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete a run-time schedule and its runs (their jobs stay). Code-defined ones go with their declaration."""
    if schedule.source == ScheduleSource.CODE:
        raise ScheduleReadOnly(f"schedule {schedule.name!r} is defined in code; remove its declaration to delete it")
    schedule.delete()
    log.info("schedule %s deleted", schedule.name)


# Firing


@dataclass
class _Plan:
    """What one schedule does this round: ticks to fire, ticks recorded as missed, how many more
    were missed than are recorded, and its next tick."""

    fire: list[datetime]
    missed: list[datetime]
    unrecorded: int
    next_tick_at: datetime


def plan_ticks(schedule: Schedule, *, now: datetime, grace: float, max_missed_rows: int) -> _Plan:
    """The due ticks of `schedule` (from its next_tick_at up to now) sorted by the missed-run
    policy. A tick older than `grace` seconds is missed: every mover was down (or too busy). skip
    fires the latest missed tick; all_within fires the missed ticks within catch_up_seconds of now;
    none fires none of them. At most `max_missed_rows` missed ticks (the latest) are listed, the
    rest counted in `unrecorded`."""
    start = schedule.next_tick_at
    on_time_from = now - timedelta(seconds=grace)
    window_from = on_time_from
    if schedule.missed == MissedPolicy.ALL_WITHIN and schedule.catch_up_seconds:
        window_from = min(on_time_from, now - timedelta(seconds=schedule.catch_up_seconds))
    spec = {"cron": schedule.cron, "interval_seconds": schedule.interval_seconds, "tz": schedule.timezone}
    unrecorded = 0
    if start < window_from - MISSED_SCAN:
        scan_from = window_from - MISSED_SCAN
        if schedule.interval_seconds:
            # Exact for intervals, and the scan starts on the grid.
            unrecorded = recurrence.count_interval_ticks(
                interval_seconds=schedule.interval_seconds,
                anchor=start,
                start=start,
                end=scan_from - timedelta(microseconds=1),
            )
            scan_from = recurrence.next_tick(**spec, anchor=start, after=scan_from - timedelta(microseconds=1))
        start = scan_from
    missed: deque[datetime] = deque(maxlen=max_missed_rows + 1)
    fire: list[datetime] = []
    count_missed = 0
    for tick in recurrence.ticks_between(**spec, anchor=schedule.next_tick_at, start=start, end=now):
        if tick >= window_from:
            fire.append(tick)
        else:
            missed.append(tick)
            count_missed += 1
    if schedule.missed == MissedPolicy.SKIP and missed and not fire:
        # (With an on-time tick to fire, that one stands for the missed ones.)
        fire.append(missed.pop())
        count_missed -= 1
    kept = list(missed)[-max_missed_rows:] if max_missed_rows > 0 else []
    unrecorded += count_missed - len(kept)
    next_tick_at = recurrence.next_tick(**spec, anchor=schedule.next_tick_at, after=now)
    return _Plan(fire=fire, missed=kept, unrecorded=unrecorded, next_tick_at=next_tick_at)


def _store_jobs(jobs: list[Job]) -> list[Job]:
    """Store ticks' jobs by the submit path; a tick is unique by its run, so no unique key."""
    return [job for job, _created in _store(built=[(job, None) for job in jobs], owner=None)]


def _build(schedule: Schedule, *, now: datetime) -> Job:
    return build_job(
        type=schedule.job_type,
        payload=schedule.payload,
        priority=schedule.priority,
        max_retries=schedule.max_retries,
        now=now,
    )


def _previous_unfinished(schedules: list[Schedule]) -> set[int]:
    """Of the overlap=skip schedules among `schedules`, those whose latest fired job has not finished."""
    ids = [s.pk for s in schedules if s.overlap == OverlapPolicy.SKIP]
    if not ids:
        return set()
    latest = ScheduleRun.objects.filter(schedule=OuterRef("pk"), outcome=TickOutcome.FIRED).order_by("-tick_at")
    rows = (
        Schedule.objects.filter(pk__in=ids)
        .annotate(has_run=Exists(latest), status=Subquery(latest.values("job__status")[:1]))
        .values_list("pk", "has_run", "status")
    )
    # A run whose job was deleted (retention deletes finished jobs) counts as finished.
    return {pk for pk, has_run, status in rows if has_run and status is not None and status not in FINISHED}


@dataclass
class _Round:
    """The rows and counts of one batch of schedules."""

    jobs: list[Job] = field(default_factory=list)
    runs: list[ScheduleRun] = field(default_factory=list)
    fired: list[tuple[str, float]] = field(default_factory=list)  # (type, lateness)
    missed: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, reason) -> count

    def count_missed(self, job_type: str, reason: str, n: int) -> None:
        if n:
            self.missed[(job_type, reason)] = self.missed.get((job_type, reason), 0) + n


def _plan_batch(schedules: list[Schedule], *, now: datetime) -> _Round:
    grace = settings.JOB_SCHEDULE_GRACE_SECONDS
    cap = settings.JOB_SCHEDULE_MAX_MISSED_ROWS
    busy = _previous_unfinished(schedules)
    batch = _Round()
    for schedule in schedules:
        try:
            plan = plan_ticks(schedule, now=now, grace=grace, max_missed_rows=cap)
        except Exception:
            # A row edited by hand into something the tick math refuses must not hold up the others.
            log.exception("schedule %s: its ticks cannot be computed; trying again in a minute", schedule.name)
            schedule.next_tick_at = now + RETRY_BROKEN
            continue
        for tick in plan.missed:
            batch.runs.append(_run(schedule, tick, TickOutcome.MISSED, now=now))
        batch.count_missed(schedule.job_type, TickOutcome.MISSED, len(plan.missed) + plan.unrecorded)
        for tick in plan.fire:
            if schedule.pk in busy:
                batch.runs.append(_run(schedule, tick, TickOutcome.SKIPPED_OVERLAP, now=now))
                batch.count_missed(schedule.job_type, TickOutcome.SKIPPED_OVERLAP, 1)
                continue
            try:
                job = _build(schedule, now=now)
            except JobQueueError as exc:
                # The type went away or its validator changed: the tick cannot become a job.
                log.error("schedule %s: tick %s not fired: %s", schedule.name, tick.isoformat(), exc.message)
                batch.runs.append(_run(schedule, tick, TickOutcome.MISSED, now=now))
                batch.count_missed(schedule.job_type, TickOutcome.MISSED, 1)
                continue
            batch.jobs.append(job)
            run = _run(schedule, tick, TickOutcome.FIRED, now=now, job=job)
            batch.runs.append(run)
            batch.fired.append((schedule.job_type, run.lateness_seconds))
            if schedule.overlap == OverlapPolicy.SKIP:
                busy.add(schedule.pk)  # this job has not finished either
        if plan.fire or plan.missed:
            schedule.last_tick_at = max([*plan.fire, *plan.missed])
        schedule.next_tick_at = plan.next_tick_at
    return batch


def _run(schedule: Schedule, tick: datetime, outcome: str, *, now: datetime, job: Job | None = None) -> ScheduleRun:
    lateness = max(0.0, (now - tick).total_seconds()) if outcome == TickOutcome.FIRED else None
    return ScheduleRun(
        schedule=schedule, tick_at=tick, outcome=outcome, job=job, recorded_at=now, lateness_seconds=lateness
    )


def _write(batch: _Round) -> _Round:
    """Store the batch's jobs and runs in one go; if a tick was recorded meanwhile (the unique
    constraint says so), store them one schedule's tick at a time, skipping what exists."""
    try:
        with transaction.atomic():
            if batch.jobs:
                _store_jobs(batch.jobs)
            ScheduleRun.objects.bulk_create(batch.runs)
        return batch
    except IntegrityError:
        pass
    kept = _Round(missed=batch.missed)
    for run in batch.runs:
        try:
            with transaction.atomic():
                if run.job is not None:
                    _store_jobs([run.job])
                run.save(force_insert=True)
        except IntegrityError:
            log.info("schedule %s: tick %s was recorded by another mover", run.schedule.name, run.tick_at.isoformat())
            continue
        kept.runs.append(run)
        if run.job is not None:
            kept.jobs.append(run.job)
            kept.fired.append((run.schedule.job_type, run.lateness_seconds))
    return kept


def _record(batch: _Round) -> None:
    for job_type, lateness in batch.fired:
        metrics.record_schedule_tick(type=job_type, lateness=lateness)
    for (job_type, reason), count in batch.missed.items():
        metrics.record_schedule_missed(type=job_type, reason=reason, count=count)


def schedules_fire_due(*, now: datetime | None = None) -> int:
    """Fire the due ticks of enabled schedules; returns the jobs made. Any number of movers may call
    it. Schedules are taken JOB_SCHEDULE_BATCH at a time, locked (SKIP LOCKED: another mover takes
    the next ones), their ticks sorted by the missed-run and overlap policies, and their jobs, runs
    and next ticks written in the batch's transaction."""
    size = settings.JOB_SCHEDULE_BATCH
    fired = 0
    while True:
        current = _now(now)
        with transaction.atomic():
            schedules = list(
                Schedule.objects.select_for_update(skip_locked=True)
                .filter(enabled=True, next_tick_at__lte=current)
                .order_by("next_tick_at")[:size]
            )
            if not schedules:
                break
            batch = _write(_plan_batch(schedules, now=current))
            Schedule.objects.bulk_update(schedules, ["next_tick_at", "last_tick_at", "updated_at"])
            transaction.on_commit(partial(_record, batch), robust=True)
        fired += len(batch.jobs)
        if len(schedules) < size:
            break
    return fired


# Schedules declared in code


def _declared_values(declaration: registry.ScheduleDeclaration) -> dict[str, Any]:
    values = {key: getattr(declaration, key) for key in DECLARED}
    return {**values, "payload": dict(declaration.payload or {})}


def _create_declared(name: str, values: dict[str, Any], *, now: datetime) -> bool:
    """Create a code-defined schedule; False if another mover, starting at the same time, just did."""
    try:
        schedule_create(name=name, **values, source=ScheduleSource.CODE, now=now)
    except InvalidSubmission as exc:
        if exc.field == "name" and Schedule.objects.filter(name=name, source=ScheduleSource.CODE).exists():
            return False
        raise
    return True


def schedules_sync_code(*, now: datetime | None = None) -> SyncResult:
    """Make the code-defined schedules in the database those declared in the registry: create the
    new, update the changed (a pause by an operator stays), delete the ones no longer declared.
    A declaration that is not valid raises, naming the schedule and the field."""
    now = _now(now)
    result = SyncResult()
    declared = registry.declared_schedules()
    with transaction.atomic():
        existing = {s.name: s for s in Schedule.objects.select_for_update().filter(name__in=list(declared))}
        for name, declaration in declared.items():
            values = _declared_values(declaration)
            schedule = existing.get(name)
            try:
                if schedule is None:
                    if _create_declared(name, values, now=now):
                        result.created.append(name)
                elif schedule.source != ScheduleSource.CODE:
                    log.error("schedule %s is declared in code but was made at run time: left as it is", name)
                    result.conflicts.append(name)
                elif any(getattr(schedule, key) != value for key, value in values.items()):
                    _apply(schedule, values, now=now, actor=None)
                    result.updated.append(name)
            except JobQueueError as exc:
                raise InvalidSubmission(f"schedule {name!r} declared in code: {exc.message}", field=exc.field) from None
        gone = Schedule.objects.filter(source=ScheduleSource.CODE).exclude(name__in=list(declared))
        result.removed = sorted(gone.values_list("name", flat=True))
        gone.delete()
    if result.changed or result.conflicts:
        log.info(
            "code-defined schedules synced: created %s, updated %s, removed %s, conflicts %s",
            result.created,
            result.updated,
            result.removed,
            result.conflicts,
        )
    return result
