"""Tasks declared with Django's `@task`, run by jobqueue's workers in the e2e tests."""

import asyncio
import sys

import redis
from django.conf import settings
from django.utils import timezone

from jobs.adapters.task_api import TaskContext, task
from tasks import PermanentError

COUNTS_KEY = "jq:test:task-counts"


class Declined(Exception):
    """A failure of the task's own kind."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=-10)
def charge(card: str) -> None:
    raise Declined(f"card {card} declined")


@task
def started_at(label: str) -> dict:
    """When it ran: for a task enqueued with run_after."""
    return {"label": label, "ran_at": timezone.now().isoformat()}


@task(takes_context=True)
def describe(context: TaskContext, note: str) -> dict:
    result = context.task_result
    return {"id": result.id, "attempt": context.attempt, "worker": result.worker_ids[-1], "note": note}


@task
async def double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@task
def count(key: str) -> int:
    """How many times it ran for `key`, counted in Redis."""
    return redis.Redis.from_url(settings.REDIS_URL).hincrby(COUNTS_KEY, key, 1)


@task
def refuse(reason: str) -> None:
    raise PermanentError(f"refused: {reason}")


@task
def exits(how: str) -> None:
    """Leaves as a script does: exit() (SystemExit), or as Ctrl-C does (KeyboardInterrupt)."""
    if how == "exit":
        sys.exit("the task exits")
    raise KeyboardInterrupt


@task
def not_json() -> object:
    return object()


def plain(a: int) -> int:
    """A function, not a task: never run by the backend."""
    return a
