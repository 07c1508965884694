"""Job types and the Celery task that runs them.

from tasks import job_type, schedule, PermanentError

@job_type("email", max_retries=3, timeout=30)
def send(payload, ctx): ...

schedule("weekly-digest", job_type="email", cron="0 8 * * MON", timezone="Europe/Berlin", payload={...})
"""

from jobs.rules.exceptions import AttemptFenced, JobCancelled, PermanentError
from jobs.rules.registry import job_type, schedule

__all__ = ["AttemptFenced", "JobCancelled", "PermanentError", "job_type", "schedule"]
