"""Errors of jobqueue. Each class's docstring is its default message."""


class JobQueueError(Exception):
    """A jobqueue error occurred."""

    field: str | None = None

    def __init__(self, message: str | None = None, *, field: str | None = None, details: object = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details if details is not None else self.message  # InvalidPayload's, InvalidBulkSubmission's
        if field is not None:
            self.field = field
        super().__init__(self.message)


class ScheduleNotFound(JobQueueError):
    """No such schedule."""


class InvalidTransition(JobQueueError):
    """The job is not in a state that allows this change."""


class JobNotFound(JobQueueError):
    """No such job."""


class UnknownJobType(JobQueueError):
    """Unknown job type."""

    field = "type"


class InternalJobType(JobQueueError):
    """This job type is internal: the project's code submits it (people need jobs.submit_internal_job)."""

    field = "type"


class DuplicateJobType(JobQueueError):
    """A job type with this name is already registered."""


class InvalidPayload(JobQueueError):
    """The payload is not valid for this job type."""

    field = "payload"


class InvalidSubmission(JobQueueError):
    """The submission is not valid."""


class IdempotencyKeyReused(JobQueueError):
    """This idempotency key was used before for a submission with other parameters."""

    field = "idempotency_key"


class UniqueKeyContended(JobQueueError):
    """The unique key changed hands repeatedly during this submit; submit again."""

    field = "unique_key"


class InvalidBulkSubmission(JobQueueError):
    """Some jobs of the batch are not valid; nothing was stored."""

    field = "jobs"


def error_detail(exc: JobQueueError) -> dict:
    """The {field: [problem]} form of an error, as the API answers it."""
    if isinstance(exc, InvalidPayload | InvalidBulkSubmission):
        return {exc.field: exc.details}
    if exc.field is None:
        return {"detail": exc.message}
    return {exc.field: [exc.message]}


class PermanentError(Exception):
    """Raised by a handler to fail the job at once, without retries."""


class AttemptFenced(Exception):  # noqa: N818 - it names what happened to the attempt, as Celery's Reject does
    """Raised in a handler (by ctx.check(), ctx.progress(), ctx.save_artifact()) whose attempt is no
    longer its own: its lease ran out or the job was taken over. Stop: the job runs, or ran,
    elsewhere; what this attempt returns is refused, and its process is ended after JOB_FENCE_GRACE."""


class JobCancelled(AttemptFenced):
    """The job was cancelled while this attempt ran; its process is ended after JOB_CANCEL_GRACE."""


class UnknownQueue(JobQueueError):
    """No such queue."""


class InvalidLimit(JobQueueError):
    """The limit is not valid."""
