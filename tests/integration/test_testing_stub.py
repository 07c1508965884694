"""tasks.testing: the stub broker runs jobs through the platform's own task and services."""

import pytest
from django.db import transaction

from jobs import services
from jobs.models import Job, JobAttempt
from jobs.rules.states import Status
from tasks.testing import stub_broker


@pytest.fixture(autouse=True)
def _services(db):
    """PostgreSQL only, no Redis: the stub broker takes the messages."""


def test_a_submitted_job_is_kept_and_run_by_the_task():
    with stub_broker() as broker:
        job, _ = services.job_submit(type="test.progress", payload={})
        assert [m[0] for m in broker.messages] == [job.id]

        assert broker.run_all() == 1

    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == (Status.SUCCEEDED, {"done": True}, 1)
    assert broker.messages == []


def test_retries_wait_for_the_clock_and_run_when_it_is_advanced():
    with stub_broker() as broker:
        job, _ = services.job_submit(type="test.flaky", payload={"fail_times": 2})
        assert broker.run_all() == 1
        job.refresh_from_db()
        assert job.status == Status.RETRYING and job.error_type == "ConnectionError"

        assert broker.run_all(advance=True) == 2

    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED
    outcomes = list(JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["failed", "failed", "succeeded"]
    assert broker.offset.total_seconds() > 0


def test_a_permanent_error_kills_the_job_at_once_and_parks_a_dead_letter():
    with stub_broker() as broker:
        job, _ = services.job_submit(type="test.permanent", payload={})
        broker.run_all(advance=True)

    job.refresh_from_db()
    assert job.status == Status.DEAD and job.attempts == 1
    assert broker.dead_letters == [str(job.id)]


def test_a_delayed_job_runs_only_once_its_time_has_come():
    with stub_broker() as broker:
        job, _ = services.job_submit(type="test.progress", payload={}, delay=600)
        assert broker.run_all() == 0 and broker.messages == []
        assert broker.advance(599) == 0
        assert broker.advance(1) == 1
        assert broker.run_all() == 1

    assert Job.objects.get(pk=job.pk).status == Status.SUCCEEDED


def test_it_works_inside_a_transaction_that_never_commits():
    """As in a test case that rolls back at its end: nothing waits for a commit, and a failed
    attempt does not drop the test's connection."""
    with transaction.atomic(), stub_broker() as broker:
        job, _ = services.job_submit(type="test.flaky", payload={"fail_times": 1})
        assert broker.run_all(advance=True) == 2
        assert Job.objects.get(pk=job.pk).status == Status.SUCCEEDED
        transaction.set_rollback(True)

    assert not Job.objects.filter(pk=job.pk).exists()


def test_the_real_dispatch_is_back_after_the_block():
    from jobs.adapters import dispatch

    with stub_broker():
        assert dispatch.send_jobs.__module__ != "jobs.adapters.dispatch"
    assert dispatch.send_jobs.__module__ == "jobs.adapters.dispatch"
