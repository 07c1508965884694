"""The one Celery task: claim a job by id, run its handler, report the outcome.

The outcome is applied to the job by the receivers in `tasks.signals` (task_success,
task_failure), which call the services; nothing here writes a status.
"""

from celery import shared_task

from jobs import services
from jobs.dispatch import RUN_JOB_TASK

from . import registry, worker
from .context import JobContext


@shared_task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> dict:
    claim = services.job_claim(job_id=job_id, worker=self.request.hostname or "")
    if claim is None:
        # Another delivery holds the job, or it was cancelled or finished: nothing to run.
        return {"claimed": False, "job_id": job_id}
    worker.running[self.request.id] = claim
    worker.start_heartbeat()
    handler = registry.get(claim.type).handler
    context = JobContext(job_id=claim.job_id, attempt=claim.attempt, serial=claim.serial)
    result = handler(claim.payload, context)
    return {"claimed": True, "job_id": claim.job_id, "serial": claim.serial, "result": result}
