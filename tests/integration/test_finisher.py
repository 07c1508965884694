"""The finisher's writer on the real PostgreSQL: a batch whose write fails part-way (the
connection breaks) is written again, and every success it records counts and wakes once."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from jobs import services
from jobs.models import Job
from jobs.rules.states import Status
from jobs.services import limit_selectors
from tasks import finisher

pytestmark = pytest.mark.postgres_only


@contextmanager
def connection_cut_before(pattern: str, *, nth: int = 1) -> Iterator[None]:
    """This thread's connection to PostgreSQL breaks (its server process is ended) just before
    the `nth` statement whose SQL matches `pattern` runs."""
    seen = 0

    def intercept(execute, sql, params, many, context):
        nonlocal seen
        if re.search(pattern, sql):
            seen += 1
            if seen == nth:
                execute("SELECT pg_terminate_backend(pg_backend_pid())", None, False, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(intercept):
        yield
    assert seen >= nth, f"the statement {pattern!r} ran {seen} times"


def submit(job_type: str = "noop") -> Job:
    job, _ = services.job_submit(type=job_type, payload={})
    return job


def processed(job_type: str) -> float:
    return REGISTRY.get_sample_value("jobs_processed_total", {"type": job_type, "queue": "medium"}) or 0.0


def test_a_batch_written_again_after_a_failure_part_way_counts_each_success_once():
    jobs = [submit() for _ in range(3)]
    claims = [services.job_claim(job_id=job.id, worker="w1") for job in jobs]
    # Handed over without their claims, so each one's facts are looked up after the write.
    batch = [services.Success(c.job_id, c.serial, None, timezone.now()) for c in claims]
    before = processed("noop")

    with connection_cut_before(r'FROM "jobs_jobattempt"', nth=2):
        finisher._write(batch)

    assert processed("noop") - before == 3
    assert set(Job.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}


def test_a_batch_written_again_after_a_failure_part_way_still_wakes_the_job_waiting_for_the_slot():
    limit_selectors.forget_overrides()
    first, second, waiter = submit("test.limited"), submit("test.limited"), submit("test.limited")
    running = [services.job_claim(job_id=job.id, worker="w1", job_type=job.type) for job in (first, second)]
    assert services.job_claim(job_id=waiter.id, worker="w1", job_type=waiter.type) is None
    before = processed("test.limited")

    with connection_cut_before(r'^SELECT \S+ AS "a" FROM "jobs_job"'):  # the wake's look for waiting jobs
        finisher._write([services.Success(first.id, running[0].serial, {}, timezone.now(), running[0])])

    waiter.refresh_from_db()
    assert waiter.status == Status.QUEUED
    assert processed("test.limited") - before == 1
