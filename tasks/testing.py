"""Test job types in a project's own test suite, without Redis or Celery.

    from tasks.testing import stub_broker

    with stub_broker() as broker:
        job, _ = services.job_submit(type="billing.invoice", payload={...})
        broker.run_all(advance=True)  # retries included: the clock jumps to each retry's time

Jobs go through the platform's own services: the submit service validates and stores them, the
one Celery task (tasks.runner.run_job, run in this process) claims and runs them, and its
outcomes apply the retry policy and the state machine. Only the broker is replaced: the messages
dispatch would publish are kept in `messages`, and the copies of dead jobs in `dead_letters`.
Messages are kept at once rather than on commit, since a test's transaction may never commit.
Successes are written by the task itself rather than by the worker's writer thread, and the
database connection is left alone, so it works inside a test's transaction (SQLite too).
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from django.utils import timezone

from jobs import dispatch, services
from jobs.models import Job
from jobs.states import WAITING_FOR_TIME

from . import finisher, outcomes, worker
from .runner import run_job


class StubBroker:
    def __init__(self) -> None:
        self.messages: list[dispatch.Dispatch] = []  # (job id, queue, timeout, job type), oldest first
        self.dead_letters: list[str] = []  # ids of the jobs that died
        self.offset = timedelta()  # how far `advance` moved the clock

    def now(self) -> datetime:
        return timezone.now() + self.offset

    def _keep(self, jobs: Any, *, front: bool = False) -> int:
        ready = [job for job in jobs if not dispatch.queue_paused(job[1])]
        self.messages = [*reversed(ready), *self.messages] if front else [*self.messages, *ready]
        return len(ready)

    def run_all(self, *, advance: bool = False) -> int:
        """Run every kept message through the task, and those its jobs lead to; how many ran.

        `advance`: then move the clock to the next retrying or scheduled job's time, and go on
        until none is left waiting for time.
        """
        ran = 0
        while True:
            while self.messages:
                job_id = self.messages.pop(0)[0]
                run_job.apply(args=[str(job_id)])
                ran += 1
            waiting = Job.objects.filter(status__in=WAITING_FOR_TIME).order_by("run_at").first()
            if not advance or waiting is None:
                return ran
            self.advance(max((waiting.run_at - self.now()).total_seconds(), 0.0))

    def advance(self, seconds: float) -> int:
        """Move the clock on by `seconds`, as the mover would find it: queue the jobs due by then
        and fire the schedules' due ticks; how many jobs that queued."""
        self.offset += timedelta(seconds=seconds)
        return services.jobs_release_due(now=self.now()) + services.schedules_fire_due(now=self.now())


@contextmanager
def stub_broker() -> Iterator[StubBroker]:
    """Keep the messages of jobs in memory instead of publishing them to Redis (see the module)."""
    stub = StubBroker()
    kept = stub._keep
    with ExitStack() as stack:
        for target, name, value in (
            (dispatch, "send_jobs", kept),
            (dispatch, "send_jobs_on_commit", kept),
            (dispatch, "send_dead_letter_on_commit", lambda *, job_id, **_: stub.dead_letters.append(str(job_id))),
            (finisher, "record", lambda success: services.jobs_succeed([success])),
            (worker, "start_lease_keeper", lambda: None),
            (worker, "close_old_connections", lambda: None),
            (outcomes, "close_old_connections", lambda: None),
        ):
            stack.enter_context(mock.patch.object(target, name, value))
        dispatch.broker_breaker.reset()
        yield stub
