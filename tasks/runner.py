"""The one Celery task: claim a job by id, run its handler, report the outcome.

The attempt reads from top to bottom: the claim, the handler, then its outcome: the value to
`outcomes.succeeded`, an exception to `outcomes.failed`. Only what this process cannot see
reaches the task_failure receiver in `tasks.outcomes`: a pool process killed (reported by the
main process), a hard time limit. Outcomes call the services; nothing here writes a status.
The task itself returns None, so Celery has nothing to format or hand back to the pool's parent.
Its request (jobs.adapters.internals.RequestWithFailedRuntime) gives a failure's event the attempt's runtime.
"""

from celery import shared_task

from jobs.adapters.dispatch import RUN_JOB_TASK
from jobs.adapters.internals import RequestWithFailedRuntime
from jobs.rules import registry
from jobs.rules.exceptions import AttemptFenced

from . import fence, outcomes, worker
from .context import JobContext


class HandlerExited(Exception):
    """The handler raised SystemExit or KeyboardInterrupt (exit() in a task): its attempt failed."""


@shared_task(name=RUN_JOB_TASK, bind=True, Request=RequestWithFailedRuntime)
def run_job(self, job_id: str) -> None:
    claim = worker.claim_when_reachable(job_id=job_id, worker=self.request.hostname or "", request=self.request)
    if claim is None:
        # Another delivery holds the job, it was cancelled or finished, or no such job is visible
        # (deleted, or not committed yet; once committed, the mover sends it again): nothing to run.
        return
    fence.begin(claim, task_id=self.request.id)
    try:
        handler = registry.get(claim.type).handler  # UnknownJobType: a permanent failure
        value = handler(claim.payload, JobContext(job_id=claim.job_id, attempt=claim.attempt, serial=claim.serial))
    except BaseException as exc:  # the soft time limit too; and exit() fails the attempt, not the pool process
        outcomes.failed(claim, exc, task_id=self.request.id, fenced=fence.end(claim))
        if isinstance(exc, AttemptFenced):
            return  # it stopped as told: its outcome was offered and refused, not a task's failure
        if not isinstance(exc, Exception):  # Celery would let it end the process: the job counted as lost
            raise HandlerExited(f"the handler raised {type(exc).__name__}") from exc
        raise  # Celery reports the task failed (events, Flower); the job's failure is recorded
    outcomes.succeeded(claim, value, fenced=fence.end(claim))
