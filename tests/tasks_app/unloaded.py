"""Tasks of a module that nothing in the test process imports: a payload that names one is
refused without importing the module (tests/integration/test_internal_job_types.py)."""

from jobs.adapters.task_api import task


@task
def never() -> None:
    """Never run."""
