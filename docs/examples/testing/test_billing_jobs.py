"""Tests of billing_jobs without Redis or Celery: jobs run through jobqueue's own services
(submit, the task, the retry policy, schedules), in this process, on the test database.

With pytest-django, mark them to use the database: pytestmark = pytest.mark.django_db
"""

import billing_jobs
import pytest

from jobs import services
from jobs.models import Schedule
from jobs.rules.exceptions import InvalidPayload
from tasks.testing import stub_broker


class FakeGateway:
    """Answers after `down` failures."""

    def __init__(self, down: int = 0) -> None:
        self.down, self.charged = down, []

    def charge(self, customer, cents):
        if self.down:
            self.down -= 1
            raise billing_jobs.GatewayDown("timed out")
        self.charged.append((customer, cents))
        return f"ch_{len(self.charged)}"


def test_an_invoice_is_charged_once(monkeypatch):
    monkeypatch.setattr(billing_jobs, "gateway", FakeGateway())
    with stub_broker() as broker:
        job, _ = services.job_submit(type="billing.invoice", payload={"customer": "acme", "cents": 1200})
        broker.run_all()

    job.refresh_from_db()
    assert (job.status, job.result) == ("succeeded", {"charge": "ch_1", "attempt": 1})
    assert billing_jobs.gateway.charged == [("acme", 1200)]


def test_a_bad_payload_is_refused_at_submit():
    with stub_broker() as broker, pytest.raises(InvalidPayload) as refused:
        services.job_submit(type="billing.invoice", payload={"customer": "acme", "cents": 0})
    assert "cents" in refused.value.details
    assert broker.messages == []


def test_a_gateway_outage_is_retried_until_it_answers(monkeypatch):
    monkeypatch.setattr(billing_jobs, "gateway", FakeGateway(down=2))
    with stub_broker() as broker:
        job, _ = services.job_submit(type="billing.invoice", payload={"customer": "acme", "cents": 1200})
        broker.run_all()  # the first attempt fails: the job waits for its retry
        job.refresh_from_db()
        assert (job.status, job.error_type) == ("retrying", "GatewayDown")

        broker.run_all(advance=True)  # the clock moves on to each retry

    job.refresh_from_db()
    assert (job.status, job.result["attempt"]) == ("succeeded", 3)


def test_a_gateway_that_stays_down_leaves_a_dead_job(monkeypatch):
    monkeypatch.setattr(billing_jobs, "gateway", FakeGateway(down=99))
    with stub_broker() as broker:
        job, _ = services.job_submit(type="billing.invoice", payload={"customer": "acme", "cents": 1200})
        broker.run_all(advance=True)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 4)  # the first attempt and 3 retries
    assert broker.dead_letters == [str(job.id)]


def test_a_closed_account_fails_at_once_without_retries(monkeypatch):
    monkeypatch.setattr(billing_jobs, "gateway", FakeGateway())
    with stub_broker() as broker:
        job, _ = services.job_submit(type="billing.invoice", payload={"customer": "closed-7", "cents": 5})
        broker.run_all(advance=True)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_type) == ("dead", 1, "PermanentError")
    assert billing_jobs.gateway.charged == []


def test_the_month_is_closed_on_the_first_at_six():
    with stub_broker() as broker:
        services.schedules_sync_code(now=broker.now())  # as the mover does when it starts
        schedule = Schedule.objects.get(name="billing-close-month")
        broker.advance((schedule.next_tick_at - broker.now()).total_seconds() - 1)
        assert broker.messages == []  # not yet

        assert broker.advance(1) == 1
        broker.run_all()

    run = schedule.runs.get()
    assert (run.tick_at.day, run.tick_at.hour, run.tick_at.minute) == (1, 6, 0)
    assert (run.job.status, run.job.result) == ("succeeded", {"closed": "current"})
