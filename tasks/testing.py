"""`stub_broker()`: a project tests its job types without Redis or Celery, through the services
and the task the platform runs (docs/howto/testing-job-types.md). Only the broker is replaced:
messages are kept in memory at once (a test's transaction may never commit), successes are
written by the task itself, and the test's database connection is left alone."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from django.utils import timezone

from jobs import services
from jobs.adapters import dispatch
from jobs.models import Job
from jobs.rules.states import WAITING_FOR_TIME

from . import finisher, outcomes, worker
from .runner import run_job


class StubBroker:
    def __init__(self) -> None:
        self.messages: list[dispatch.Dispatch] = []  # (job id, queue, timeout, job type), oldest first
        self.dead_letters: list[str] = []  # ids of the jobs that died
        self.offset = timedelta()  # how far `advance` moved the clock

    def now(self) -> datetime:
        return timezone.now() + self.offset

    def keep(self, jobs: Any, *, front: bool = False) -> int:
        ready = [job for job in jobs if not dispatch.queue_paused(job[1])]
        self.messages = [*reversed(ready), *self.messages] if front else [*self.messages, *ready]
        return len(ready)

    def run_all(self, *, advance: bool = False) -> int:
        """Run the kept messages through the task, and those they lead to; how many ran. `advance`:
        then move the clock to each retrying or scheduled job's time until none is left waiting."""
        ran = 0
        while True:
            while self.messages:
                run_job.apply(args=[str(self.messages.pop(0)[0])])
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
    stub = StubBroker()
    with ExitStack() as stack:
        for target, name, value in (
            (dispatch, "send_jobs", stub.keep),
            (dispatch, "send_jobs_on_commit", stub.keep),
            (dispatch, "send_dead_letter_on_commit", lambda *, job_id, **_: stub.dead_letters.append(str(job_id))),
            (finisher, "record", lambda success: services.jobs_succeed([success])),
            (worker, "close_old_connections", lambda: None),
            (outcomes, "close_old_connections", lambda: None),
        ):
            stack.enter_context(mock.patch.object(target, name, value))
        dispatch.broker_breaker.reset()
        yield stub
