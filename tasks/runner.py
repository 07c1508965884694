"""The one Celery task: claim a job by id, run its handler, report the outcome.

A handler's value is handed to `outcomes.succeeded` as it returns; a failure reaches the
task_failure receiver in `tasks.outcomes` (the parent process reports a killed one there too).
Both call the services; nothing here writes a status. The task itself returns None, so Celery
has nothing to format or hand back to the pool's parent.
"""

from celery import shared_task

from jobs import registry
from jobs.dispatch import RUN_JOB_TASK

from . import outcomes, worker
from .context import JobContext


@shared_task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> None:
    claim = worker.claim_when_reachable(job_id=job_id, worker=self.request.hostname or "", request=self.request)
    if claim is None:
        # Another delivery holds the job, or it was cancelled or finished: nothing to run.
        return
    worker.running[self.request.id] = claim
    worker.start_lease_keeper()
    handler = registry.get(claim.type).handler
    context = JobContext(job_id=claim.job_id, attempt=claim.attempt, serial=claim.serial)
    value = handler(claim.payload, context)
    worker.running.pop(self.request.id, None)
    outcomes.succeeded(claim, value)
