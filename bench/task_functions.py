"""A task declared with Django's `@task` for the tasks-enqueue scenario (imported once Django is set up)."""

from jobs.adapters.task_api import task


@task
def touch(n: int, label: str = "") -> int:
    return n
