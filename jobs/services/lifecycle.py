"""The life of one attempt: claim, lease, progress, and the outcome.

Every change is a named move of the state machine (`job_transition`, a conditional update in the
store), and every outcome is fenced by the attempt's `serial` (Job.serial at claim time, the
attempt's number in the history), which never repeats for a job: a stale worker can never overwrite
a newer attempt's state."""

import logging
import operator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.adapters import dispatch
from jobs.adapters.store import lease_end, store
from jobs.models import Job, JobArtifact, JobAttempt, Outcome
from jobs.rules import input_limits as limits
from jobs.rules import retry, states
from jobs.rules.states import Status, Transition
from jobs.services import events, limit_selectors
from jobs.services import limits as cluster_limits
from jobs.services.events import JobFacts

log = logging.getLogger("jobqueue.jobs")

MAX_ERROR_MESSAGE = 10_000
MAX_TRACEBACK = 50_000


def job_transition(
    move: Transition, *, job_id: Any, where: dict[str, Any] | None = None, condition: Any = None, **changes: Any
) -> bool:
    """Make one named move of the state machine (jobs.rules.states) with a conditional update. Only a row
    in one of the move's sources (and that matches the fence `where`, such as the attempt's serial,
    and the optional `condition`, a Q or boolean expression) changes; False means the move was
    refused: another process got there first, or the job moved on."""
    rows = Job.objects.filter(pk=job_id)
    return store().transition(rows, move=move, where=where, changes=changes, condition=condition) == 1


def jobs_transition(
    move: Transition, *, job_ids: list[Any], where: dict[str, Any] | None = None, **changes: Any
) -> int:
    """`job_transition` for many jobs in one statement; returns how many moved."""
    return store().transition(Job.objects.filter(pk__in=job_ids), move=move, where=where, changes=changes)


@dataclass(frozen=True)
class Claim:
    job_id: str
    type: str
    payload: dict
    attempt: int
    serial: int
    timeout: int | None
    queue: str
    started_at: datetime
    # The partition of its type's limit it holds a slot of; None for a type without limits.
    limit_key: str | None = None

    @property
    def facts(self) -> JobFacts:
        return JobFacts(self.job_id, self.type, self.queue, self.attempt)


def job_claim(*, job_id: Any, worker: str, job_type: str | None = None) -> Claim | None:
    """Move a queued job to running and open its attempt; None if someone else has it. The
    conditional update is the lock: of two deliveries of one message, only one claims. A job whose
    queue is paused is not claimed (it stays queued until the queue is resumed). `job_type`, from
    the job's message: a type without limits takes the single-statement claim; a limited one the
    limited claim, which may move the job to `waiting` instead (None)."""
    if job_type is None and limit_selectors.any_limits():
        job_type = Job.objects.filter(pk=job_id).values_list("type", flat=True).first()
    limit = limit_selectors.effective_limit(job_type) if job_type else None
    key = None
    if limit is not None and limit.limits:
        row, key, now = cluster_limits.claim_or_wait(job_id=job_id, worker=worker, job_type=job_type, limit=limit)
    else:
        now = timezone.now()
        row = store().claim(job_id=job_id, worker=worker, now=now, lease=timedelta(seconds=settings.JOB_LEASE_SECONDS))
        if row is None:
            _log_unclaimed(job_id)
    if row is None:
        return None
    claim = Claim(str(job_id), *row, started_at=now, limit_key=key)
    events.started(claim.facts, worker=worker)
    return claim


def _log_unclaimed(job_id: Any) -> None:
    """Say why a message runs nothing. A job not found may be one whose transaction has not
    committed yet (a message that came early): dropping the message loses nothing, for once
    committed the job is `queued` without a message, and the mover's redispatch sweep sends it."""
    status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if status is None:
        log.info("job %s: no such job (deleted, or not committed yet); its message is dropped", job_id)
    else:
        log.debug("job %s is %s: its message has nothing to run", job_id, status)


@dataclass(frozen=True)
class _Attempt:
    facts: JobFacts
    started_at: datetime
    max_retries: int


def _attempt(*, job_id: Any, serial: int, running: bool = False) -> _Attempt | None:
    """What the events and the retry policy need to know of an attempt; `running`: only if still running."""
    rows = JobAttempt.objects.filter(job_id=job_id, number=serial)
    if running:
        rows = rows.filter(job__status=Status.RUNNING, job__serial=serial)
    fields = ("job__type", "job__priority", "job__attempts", "started_at", "job__max_retries")
    row = rows.values_list(*fields).first()
    return None if row is None else _Attempt(JobFacts(job_id, *row[:3]), *row[3:])


def _close_attempt(*, job_id: Any, serial: int, outcome: Outcome, when: datetime, **error: str) -> None:
    JobAttempt.objects.filter(job_id=job_id, number=serial).update(outcome=outcome, finished_at=when, **error)


# What jobs_succeed did with a success, noted on it for a write of the same batch again.
_SENT = "sent"  # its write went to the database: it may have moved the job even if the call failed
_DONE = "done"  # its move is recorded and followed up (metrics, event, wake)


@dataclass(frozen=True)
class Success:
    """A successful attempt, to be recorded: the handler's value and when it returned. `claim`, the
    one `job_claim` returned for this attempt, spares a query for the event's facts. `progress`: how
    far jobs_succeed got with it (_SENT, _DONE), kept for a retry of its batch."""

    job_id: str
    serial: int
    result: Any
    finished_at: datetime
    claim: Claim | None = None
    progress: set[str] = field(default_factory=set, compare=False, repr=False)


def jobs_succeed(successes: list[Success]) -> list[Success]:
    """Record successful attempts (on PostgreSQL, in one statement); the ones recorded. A stale
    attempt (its job moved on: cancelled, recovered after a lost lease) changes nothing. Called
    again with the same successes after it raised part-way (the finisher retries a batch while the
    database is unreachable), it follows up the jobs an earlier call moved but did not follow up,
    and never one twice: each counts and wakes once."""
    todo = [success for success in successes if _DONE not in success.progress]
    if todo:
        sent_before = [success for success in todo if _SENT in success.progress]
        for success in todo:
            success.progress.add(_SENT)
        moved = store().succeed_many([(s.job_id, s.serial, s.result, s.finished_at) for s in todo])
        if sent_before:
            moved = {**_moved_before([s for s in sent_before if str(s.job_id) not in moved]), **moved}
        for success in todo:
            if str(success.job_id) in moved:
                _follow_up(success, waiting=moved[str(success.job_id)])
                success.progress.add(_DONE)
    return [success for success in successes if _DONE in success.progress]


def _moved_before(successes: list[Success]) -> dict[str, bool | None]:
    """Of successes written before, those whose attempt is the job's recorded success: an earlier
    write moved them (a serial never repeats), its follow-up is missing. Whether someone waits: unknown."""
    if not successes:
        return {}
    mine = reduce(operator.or_, (Q(pk=s.job_id, serial=s.serial) for s in successes))
    done = Job.objects.filter(mine, status=Status.SUCCEEDED).values_list("pk", flat=True)
    return {str(job_id): None for job_id in done}


def _follow_up(success: Success, *, waiting: bool | None) -> None:
    """The wake of the slot a recorded success freed, then its event (metrics, log line): a wake
    that fails leaves neither done, for the retry to do both."""
    claim = success.claim
    mine = claim is not None and (claim.job_id, claim.serial) == (str(success.job_id), success.serial)
    known = claim if mine else _attempt(job_id=success.job_id, serial=success.serial)
    cluster_limits.wake_after(
        job_type=known.facts.type,
        job_id=None if mine else success.job_id,
        key=claim.limit_key if mine else None,
        waiting=waiting,
    )
    events.succeeded(known.facts, duration=events.seconds_between(known.started_at, success.finished_at))


def job_fail(
    *,
    job_id: Any,
    serial: int,
    error_type: str,
    message: str,
    traceback: str = "",
    permanent: bool = False,
    outcome: Outcome = Outcome.FAILED,
    worker: str | None = None,
) -> Status | None:
    """Record a failed attempt and move the job on by the retry policy; returns the new status. A
    lost attempt (its worker died) counts as failed, but its duration is unknown: not observed.
    `worker`: the node that reports it, for a report that does not come from the attempt itself
    (fenced by the node as well as the serial)."""
    now = timezone.now()
    row = _attempt(job_id=job_id, serial=serial, running=True)
    if row is None:
        return None
    decision = retry.after_failure(
        attempt=row.facts.attempt, max_retries=row.max_retries, permanent=permanent, error=message
    )
    error = {"error_type": error_type[:200], "error_message": message[:MAX_ERROR_MESSAGE]}
    trace = traceback[-MAX_TRACEBACK:]
    move = states.FAIL_AND_RETRY if decision.retry else states.DIE
    target = move.target
    changes: dict[str, Any] = {"error_traceback": trace, "reason": decision.reason[:200], "lease_expires_at": None}
    if decision.retry:
        changes["run_at"] = now + timedelta(seconds=decision.delay)
    else:
        changes["finished_at"] = now
    with transaction.atomic():
        fence = {"serial": serial} if worker is None else {"serial": serial, "worker": worker}
        if not job_transition(move, job_id=job_id, where=fence, **error, **changes):
            return None
        _close_attempt(job_id=job_id, serial=serial, outcome=outcome, when=now, traceback=trace, **error)
        cluster_limits.wake_after(job_type=row.facts.type, job_id=job_id)
        if target == Status.DEAD:
            dispatch.send_dead_letter_on_commit(job_id=job_id, job_type=row.facts.type, reason=decision.reason)
        duration = None if outcome == Outcome.LOST else events.seconds_between(row.started_at, now)
        events.failed(row.facts, status=target.value, duration=duration, error=error_type[:200], reason=decision.reason)
    return target


def job_requeue(*, job_id: Any, serial: int, reason: str) -> bool:
    """Put a running job back in its queue at once, its attempt marked interrupted (worker shutdown)."""
    return _requeue_now(
        job_id=job_id, where={"serial": serial}, outcome=Outcome.INTERRUPTED, error_type="", reason=reason
    )


def _requeue_now(*, job_id: Any, where: dict[str, Any], outcome: Outcome, error_type: str, reason: str) -> bool:
    now = timezone.now()
    serial = where["serial"]
    with transaction.atomic():
        moved = job_transition(states.REQUEUE, job_id=job_id, where=where, lease_expires_at=None)
        if not moved:
            return False
        _close_attempt(
            job_id=job_id, serial=serial, outcome=outcome, when=now, error_type=error_type, error_message=reason
        )
        job = Job.objects.only("type", "priority", "attempts", "timeout", "limit_key").get(pk=job_id)
        dispatch.send_jobs_on_commit([(job_id, job.priority, job.timeout, job.type)])
        cluster_limits.wake_after(job_type=job.type, key=job.limit_key)
        facts = JobFacts(job_id, job.type, job.priority, job.attempts)
        if outcome == Outcome.LOST:
            # A failed attempt in the metrics, as when the lease finds it: who saw it die is no matter.
            events.failed(facts, status=Status.QUEUED.value, duration=None, error=error_type, reason=reason)
        else:
            events.requeued(facts, reason=reason)
    return True


def job_lost(*, job_id: Any, worker: str, reason: str, serial: int | None = None) -> Status | None:
    """The process running the job on node `worker` died (killed, out of memory): run the job again
    at once; the new status, or None if the job was not running there. Seen by the node's main
    process as it happens, so nobody waits for the lease. The lost attempt counts against the job's
    retries (a job that kills its process every time must end), but it gets no backoff: the handler
    did not fail. Fenced by the attempt's serial (`serial` when the caller knows it) and the node."""
    running = Job.objects.filter(pk=job_id, status=Status.RUNNING, worker=worker)
    if serial is not None:
        running = running.filter(serial=serial)
    serial = running.values_list("serial", flat=True).first()
    if serial is None:
        return None
    row = _attempt(job_id=job_id, serial=serial, running=True)
    if row is None:
        return None
    if not retry.after_failure(attempt=row.facts.attempt, max_retries=row.max_retries, permanent=False).retry:
        return job_fail(
            job_id=job_id, serial=serial, error_type="WorkerLost", message=reason, outcome=Outcome.LOST, worker=worker
        )
    where = {"serial": serial, "worker": worker}
    requeued = _requeue_now(job_id=job_id, where=where, outcome=Outcome.LOST, error_type="WorkerLost", reason=reason)
    return Status.QUEUED if requeued else None


def job_progress(*, job_id: Any, serial: int, percent: int, message: str = "") -> bool:
    """Report progress of a running attempt (0-100)."""
    percent = max(0, min(100, int(percent)))
    rows = Job.objects.filter(pk=job_id, status=Status.RUNNING, serial=serial)
    return rows.update(progress=percent, progress_message=str(message)[:255], updated_at=timezone.now()) == 1


def job_artifact_save(*, job_id: Any, serial: int, name: str, content: bytes, content_type: str) -> bool:
    """Keep a file the running attempt made (replacing one of the same name); False when the attempt
    no longer runs (fenced by the serial like its other outcomes)."""
    if problem := limits.artifact_problem(name, len(content)):
        raise ValueError(problem)
    with transaction.atomic():
        if not Job.objects.select_for_update().filter(pk=job_id, status=Status.RUNNING, serial=serial).exists():
            return False
        fields = {"content": content, "content_type": content_type, "size": len(content)}
        JobArtifact.objects.update_or_create(job_id=job_id, name=name, defaults=fields)
    return True


def jobs_extend_lease(*, attempts: list[tuple[Any, int]]) -> set[tuple[str, int]]:
    """Extend the lease of running attempts, (job id, serial); the ones extended. Fenced by the
    serial like every outcome, so a late beat never extends a newer attempt's lease: an attempt
    not extended has lost its job (tasks.fence)."""
    lease = lease_end(timedelta(seconds=settings.JOB_LEASE_SECONDS))
    kept = set()
    for job_id, serial in attempts:  # a node runs a few at a time: one statement each
        if Job.objects.filter(pk=job_id, serial=serial, status=Status.RUNNING).update(lease_expires_at=lease):
            kept.add((str(job_id), serial))
    return kept
