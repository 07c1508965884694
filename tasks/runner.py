"""The one Celery task: claim a job by id, run its handler, report the outcome.

The outcome is applied to the job by the receivers in `tasks.signals` (task_success,
task_failure), which call the services; nothing here writes a status. The task itself returns
None: the claim and the handler's value stay in this process (`worker.running`,
`worker.results`), so Celery has nothing to format or hand back to the pool's parent.
"""

from celery import shared_task

from jobs import services
from jobs.dispatch import RUN_JOB_TASK

from . import registry, worker
from .context import JobContext


@shared_task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> None:
    claim = services.job_claim(job_id=job_id, worker=self.request.hostname or "")
    if claim is None:
        # Another delivery holds the job, or it was cancelled or finished: nothing to run.
        return
    worker.running[self.request.id] = claim
    worker.start_heartbeat()
    handler = registry.get(claim.type).handler
    context = JobContext(job_id=claim.job_id, attempt=claim.attempt, serial=claim.serial)
    worker.results[self.request.id] = handler(claim.payload, context)
