"""The job state machine: statuses and allowed transitions, defined once."""

from dataclasses import dataclass

from django.db import models


class Status(models.TextChoices):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    # Over its type's concurrency or rate limit: queued again when a slot frees (`reason` says which).
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"


class Priority(models.TextChoices):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# The broker's queues: one per priority (a job's priority is the name of its queue), and the
# queue that keeps a copy of each dead job's message.
QUEUES: tuple[str, ...] = tuple(Priority.values)
DEAD_LETTER_QUEUE = "dead_letter"


@dataclass(frozen=True)
class Transition:
    """One named move of the state machine: a job in any of `sources` may go to `target`."""

    name: str
    sources: frozenset[str]
    target: str


# The only copy of the state machine: every move a job can make, by name. Callers name the
# move (services.job_transition(CANCEL, ...)); nobody writes a status set of their own.
CLAIM = Transition("claim", frozenset({Status.QUEUED}), Status.RUNNING)
SUCCEED = Transition("succeed", frozenset({Status.RUNNING}), Status.SUCCEEDED)
FAIL_AND_RETRY = Transition("fail_and_retry", frozenset({Status.RUNNING}), Status.RETRYING)
DIE = Transition("die", frozenset({Status.RUNNING}), Status.DEAD)
# Put back in its queue after its worker was lost or shut down, the attempt not counted as failed.
REQUEUE = Transition("requeue", frozenset({Status.RUNNING}), Status.QUEUED)
# A scheduled job's time, or a retry's backoff, has come.
BECOME_DUE = Transition("become_due", frozenset({Status.SCHEDULED, Status.RETRYING}), Status.QUEUED)
# A queued job over its type's limit waits, in the database, until a slot frees (WAKE).
WAIT = Transition("wait", frozenset({Status.QUEUED}), Status.WAITING)
WAKE = Transition("wake", frozenset({Status.WAITING}), Status.QUEUED)
CANCEL = Transition(
    "cancel", frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.WAITING}), Status.CANCELLED
)
# An operator cancels a running job: its worker is told to stop (tasks.fence) and its result is refused.
CANCEL_RUNNING = Transition("cancel_running", frozenset({Status.RUNNING}), Status.CANCELLED)
# An operator retries a dead job under the same id.
RETRY_DEAD = Transition("retry_dead", frozenset({Status.DEAD}), Status.QUEUED)
NAMED: tuple[Transition, ...] = (
    CLAIM,
    SUCCEED,
    FAIL_AND_RETRY,
    DIE,
    REQUEUE,
    BECOME_DUE,
    WAIT,
    WAKE,
    CANCEL,
    CANCEL_RUNNING,
    RETRY_DEAD,
)

# Derived from the moves: source -> allowed targets, and the sets callers ask about.
TRANSITIONS: dict[str, frozenset[str]] = {
    status: frozenset(t.target for t in NAMED if status in t.sources) for status in Status.values
}
TERMINAL: frozenset[str] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
# Nothing will run again unless an operator retries it: what retention may delete.
FINISHED: frozenset[str] = TERMINAL | RETRY_DEAD.sources
# Waiting for a time (run_at): what the mover makes due.
WAITING_FOR_TIME: frozenset[str] = BECOME_DUE.sources
# Waiting for a slot of its type's limit: what a wake queues again.
WAITING_FOR_LIMIT: frozenset[str] = WAKE.sources
