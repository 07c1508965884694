"""Job types and the Celery task that runs them.

from tasks import job_type, PermanentError

@job_type("email", max_retries=3, timeout=30)
def send(payload, ctx): ...
"""

from jobs.exceptions import PermanentError
from jobs.registry import job_type

__all__ = ["PermanentError", "job_type"]
