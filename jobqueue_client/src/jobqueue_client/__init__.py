"""A client of jobqueue's REST API for other services: submit jobs, follow them, wait for them, cancel them.

    from jobqueue_client import Client

    with Client("http://127.0.0.1:8000", token) as jobs:
        job = jobs.submit("email_welcome", {"email": "you@example.com"})
        print(jobs.wait(job).result)

`AsyncClient` has the same methods, to be awaited. It depends on httpx alone.
"""

from .client import AsyncClient, Client, __version__
from .errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    IdempotencyKeyReused,
    JobQueueError,
    NotFound,
    RateLimited,
    ServerError,
    Unavailable,
    ValidationError,
    WaitTimeout,
)
from .jobs import FINISHED, Attempt, Job, JobFailure, Progress, Submission
from .retry import RetryPolicy

__all__ = [
    "FINISHED",
    "AsyncClient",
    "Attempt",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "IdempotencyKeyReused",
    "Job",
    "JobFailure",
    "JobQueueError",
    "NotFound",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Submission",
    "Unavailable",
    "ValidationError",
    "WaitTimeout",
    "__version__",
]
