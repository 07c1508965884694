"""Each call of the client as a plan: the requests it makes, the waits in between and what the
answers mean, with no I/O of its own. `Client` and `AsyncClient` run the same plans, one with
blocking I/O and one with asyncio (client.py), so the two cannot drift apart.

A plan is a generator. It yields a `Request` and is sent back a `Response` (or `Unreachable` when
the connection failed), or yields a `Sleep` and is sent back None; it returns the call's value or
raises its error."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from .errors import Conflict, ConnectionFailed, JobQueueError, WaitTimeout, decode, error_for
from .jobs import Job, Submission
from .retry import RetryPolicy, parse_retry_after

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None  # JSON, encoded once, so every retry sends the same bytes


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    content: bytes


@dataclass(frozen=True)
class Unreachable:
    """The request got no answer: the connection was refused, broke, or timed out."""

    error: Exception


@dataclass(frozen=True)
class Sleep:
    seconds: float


Plan = Generator[Request | Sleep, Response | Unreachable | None, T]
JobRef = str | Job


def exchange(request: Request, policy: RetryPolicy) -> Plan[Response]:
    """Send `request` until it gets a final answer: the success, or the error it stands for."""
    attempt = 0
    while True:
        attempt += 1
        reply = yield request
        if isinstance(reply, Unreachable):
            wait = policy.wait_after_failure(attempt)
            if wait is None:
                raise ConnectionFailed(f"{request.method} {request.path}: {reply.error}") from reply.error
        elif isinstance(reply, Response) and reply.status < 400:
            return reply
        elif isinstance(reply, Response):
            retry_after = parse_retry_after(reply.headers.get("retry-after"), date=reply.headers.get("date"))
            wait = policy.wait_after_answer(attempt, reply.status, retry_after)
            if wait is None:
                raise error_for(reply.status, reply.content, retry_after=retry_after)
        else:
            raise TypeError(f"a plan's request was answered with {reply!r}")
        yield Sleep(wait)


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def answer(response: Response) -> Any:
    body = decode(response.content)
    if not isinstance(body, dict):
        raise JobQueueError(f"unexpected answer ({response.status}): {str(body)[:300]}", status=response.status)
    return body


def job_path(job: JobRef, suffix: str = "") -> str:
    job_id = job.id if isinstance(job, Job) else str(job)
    return quote(job_id, safe="") + suffix


def as_submission(item: Submission | Mapping[str, Any]) -> Submission:
    return item if isinstance(item, Submission) else Submission(**item)


def submit(submission: Submission, policy: RetryPolicy) -> Plan[Job]:
    request = Request("POST", "/submit-job", encode(submission.keyed().to_api()))
    response = yield from exchange(request, policy)
    return Job.from_api(answer(response), created=response.status == 201)


def submit_many(submissions: Iterable[Submission | Mapping[str, Any]], policy: RetryPolicy) -> Plan[list[Job]]:
    """All or nothing, as the API is; each item gets its own idempotency key unless it has one."""
    items = [as_submission(item).keyed().to_api() for item in submissions]
    if not items:
        return []
    response = yield from exchange(Request("POST", "/submit-jobs", encode({"jobs": items})), policy)
    return [Job.from_api(item) for item in answer(response)["jobs"]]


def get(job: JobRef, policy: RetryPolicy) -> Plan[Job]:
    response = yield from exchange(Request("GET", "/job-status/" + job_path(job)), policy)
    return Job.from_api(answer(response))


def wait(
    job: JobRef,
    policy: RetryPolicy,
    *,
    timeout: float,
    poll_interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> Plan[Job]:
    """Poll the job's status until it is finished (succeeded, dead or cancelled)."""
    deadline = clock() + timeout
    while True:
        found = yield from get(job, policy)
        if found.finished:
            return found
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(found, timeout)
        yield Sleep(min(poll_interval, left))


def cancel(job: JobRef, policy: RetryPolicy) -> Plan[Job]:
    """Cancel a job that has not finished: one that has not started never starts, a running one is
    stopped (its handler is told, then its process ended after the server's JOB_CANCEL_GRACE). One
    already cancelled (by an earlier try of this call whose answer was lost, or by anyone) is
    answered as it is: the call is safe to repeat. A job that succeeded or died: Conflict."""
    try:
        response = yield from exchange(Request("POST", "/jobs/" + job_path(job, "/cancel")), policy)
    except Conflict as conflict:
        found = yield from get(job, policy)
        if found.status != "cancelled":
            raise conflict
        return found
    return Job.from_api(answer(response))
