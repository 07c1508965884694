"""The job state machine: statuses and allowed transitions, defined once."""

from django.db import models


class Status(models.TextChoices):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
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


# The only copy of the transition table: source -> allowed targets.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.SCHEDULED: frozenset({Status.QUEUED, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    # RUNNING -> QUEUED: requeued after worker loss or shutdown, the attempt not counted as failed.
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.RETRYING, Status.DEAD, Status.QUEUED}),
    Status.RETRYING: frozenset({Status.QUEUED, Status.CANCELLED}),
    # DEAD -> QUEUED: an operator retries the dead job under the same id.
    Status.DEAD: frozenset({Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.CANCELLED: frozenset(),
}

TERMINAL: frozenset[str] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def sources_of(target: str) -> frozenset[str]:
    """Statuses from which `target` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
