"""Errors of the client. Each class's docstring is its default message.

An error answered by the API carries what its body said: `status`, `message` (the `detail`, or the
field problems in one line), `errors` (each field's problems by its path, such as `payload.email` or
`jobs[1].type`), `field` (the first of them) and the decoded `body`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import Job


class JobQueueError(Exception):
    """The job queue could not do what was asked."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        errors: dict[str, list[str]] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.status = status
        self.errors = errors or {}
        self.body = body
        self.retry_after = retry_after
        super().__init__(self.message if status is None else f"{status}: {self.message}")

    @property
    def field(self) -> str | None:
        return next(iter(self.errors), None)


class ConnectionFailed(JobQueueError):
    """The job queue could not be reached."""


class BadRequest(JobQueueError):
    """The job queue refused the request as invalid."""


class ValidationError(BadRequest):
    """The submission is not valid; `errors` names each bad field."""


class IdempotencyKeyReused(ValidationError):
    """The idempotency key was used before for a submission with other parameters."""


class AuthenticationError(JobQueueError):
    """The token is missing, invalid, or not allowed to do this."""


class NotFound(JobQueueError):
    """No such job (or it belongs to another client)."""


class Conflict(JobQueueError):
    """The job is not in a state that allows this."""


class RateLimited(JobQueueError):
    """Too many requests; `retry_after` says when to try again."""


class Unavailable(JobQueueError):
    """The job queue is unavailable for now; `retry_after` says when to try again."""

    @property
    def service(self) -> str | None:
        """What the server named as away ("database", "broker"), if it did."""
        return self.body.get("service") if isinstance(self.body, dict) else None


class ServerError(JobQueueError):
    """The job queue failed to answer the request."""


class WaitTimeout(JobQueueError):
    """The job did not finish in time."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout:g}s")
        self.job = job
        self.timeout = timeout


BY_STATUS: dict[int, type[JobQueueError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFound,
    409: Conflict,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: Unavailable,
}


def decode(content: bytes) -> Any:
    """The body as JSON, or as text when it is not JSON (a proxy's error page)."""
    text = content.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def field_errors(value: Any, path: str = "") -> dict[str, list[str]]:
    """Flattens the API's error shapes, `{field: [problem]}`, nested for payload fields and
    a list per item for bulk submissions, into `{path: [problem]}`."""
    if isinstance(value, dict):
        inner = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        inner = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return {path: [str(item) for item in value] if isinstance(value, list) else [str(value)]}
    found: dict[str, list[str]] = {}
    for inner_path, item in inner:
        found.update(field_errors(item, inner_path))
    return found


def error_for(status: int, content: bytes, *, retry_after: float | None = None) -> JobQueueError:
    """The typed error for an error answer of the API."""
    body = decode(content)
    kind = BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    errors: dict[str, list[str]] = {}
    message = None
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            message = body["detail"]
        said = {"service"} | ({"detail"} if message else set())
        errors = field_errors({key: value for key, value in body.items() if key not in said})
        if message is None and errors:
            message = "; ".join(f"{path}: {' '.join(problems)}" for path, problems in errors.items())
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:300]
    return kind(message, status=status, errors=errors, body=body, retry_after=retry_after)
