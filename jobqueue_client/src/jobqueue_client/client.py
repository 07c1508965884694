"""`Client` and `AsyncClient`: the same calls (calls.py), run with blocking I/O or with asyncio.

What each class adds is its transport: sending a `Request` with httpx and sleeping. Every decision
(the body, the idempotency key, what an answer means, whether and when to retry) is made by the plan
both of them run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import calls
from .calls import JobRef, Plan, Request, Response, Sleep, Unreachable
from .jobs import Job, Submission
from .retry import RetryPolicy

__version__ = "0.1.0"
T = TypeVar("T")


def _http_options(base_url: str, token: str, timeout: float) -> dict[str, Any]:
    headers = {
        "Authorization": f"Token {token}",
        "Accept": "application/json",
        "User-Agent": f"jobqueue-client/{__version__}",
    }
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def _send_options(request: Request) -> dict[str, Any]:
    if request.body is None:
        return {}
    return {"content": request.body, "headers": {"Content-Type": "application/json"}}


def _response(answer: httpx.Response) -> Response:
    return Response(answer.status_code, {name.lower(): value for name, value in answer.headers.items()}, answer.content)


class _Base:
    """What both clients are configured with; each opens its own kind of httpx client."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
    ) -> None:
        """`timeout`: seconds per HTTP request. `retries` and the rest: see RetryPolicy."""
        self.base_url = base_url.rstrip("/")
        self.policy = RetryPolicy(
            retries=retries, backoff=backoff, backoff_max=backoff_max, retry_after_max=retry_after_max
        )
        self._http = self._open(_http_options(self.base_url, token, timeout))

    def _open(self, options: dict[str, Any]) -> Any:
        raise NotImplementedError


class Client(_Base):
    """A blocking client of a jobqueue server. Use it as a context manager, or call `close()`."""

    _http: httpx.Client

    def _open(self, options: dict[str, Any]) -> httpx.Client:
        return httpx.Client(**options)

    def _run(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(self._send(step))
        except StopIteration as done:
            return done.value

    def _send(self, request: Request) -> Response | Unreachable:
        try:
            return _response(self._http.request(request.method, request.path, **_send_options(request)))
        except httpx.TransportError as error:
            return Unreachable(error)

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | str | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
        unique_for: int | None = None,
        unique_key: str | list[str] | None = None,
    ) -> Job:
        """Submit one job. A retried call sends the same idempotency key, so it makes one job."""
        submission = Submission(
            type, payload, priority, delay, run_at, max_retries, timeout, idempotency_key, unique_for, unique_key
        )
        return self._run(calls.submit(submission, self.policy))

    def submit_many(self, submissions: Iterable[Submission | Mapping[str, Any]]) -> list[Job]:
        """Submit up to the server's JOB_BULK_MAX jobs at once, all or nothing; short-form jobs in order."""
        return self._run(calls.submit_many(submissions, self.policy))

    def get(self, job: JobRef) -> Job:
        """The job's status, result, error and attempt history."""
        return self._run(calls.get(job, self.policy))

    def wait(self, job: JobRef, *, timeout: float = 60.0, poll_interval: float = 0.5) -> Job:
        """The job once it is succeeded, dead or cancelled; WaitTimeout after `timeout` seconds."""
        return self._run(calls.wait(job, self.policy, timeout=timeout, poll_interval=poll_interval))

    def cancel(self, job: JobRef) -> Job:
        """Cancel a job that has not finished (a running one is stopped); Conflict once it
        succeeded or died."""
        return self._run(calls.cancel(job, self.policy))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio client: the same methods as `Client`, to be awaited. Use `async with`, or `aclose()`."""

    _http: httpx.AsyncClient

    def _open(self, options: dict[str, Any]) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def _run(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(await self._send(step))
        except StopIteration as done:
            return done.value

    async def _send(self, request: Request) -> Response | Unreachable:
        try:
            return _response(await self._http.request(request.method, request.path, **_send_options(request)))
        except httpx.TransportError as error:
            return Unreachable(error)

    async def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | str | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
        unique_for: int | None = None,
        unique_key: str | list[str] | None = None,
    ) -> Job:
        """Submit one job. A retried call sends the same idempotency key, so it makes one job."""
        submission = Submission(
            type, payload, priority, delay, run_at, max_retries, timeout, idempotency_key, unique_for, unique_key
        )
        return await self._run(calls.submit(submission, self.policy))

    async def submit_many(self, submissions: Iterable[Submission | Mapping[str, Any]]) -> list[Job]:
        """Submit up to the server's JOB_BULK_MAX jobs at once, all or nothing; short-form jobs in order."""
        return await self._run(calls.submit_many(submissions, self.policy))

    async def get(self, job: JobRef) -> Job:
        """The job's status, result, error and attempt history."""
        return await self._run(calls.get(job, self.policy))

    async def wait(self, job: JobRef, *, timeout: float = 60.0, poll_interval: float = 0.5) -> Job:
        """The job once it is succeeded, dead or cancelled; WaitTimeout after `timeout` seconds."""
        return await self._run(calls.wait(job, self.policy, timeout=timeout, poll_interval=poll_interval))

    async def cancel(self, job: JobRef) -> Job:
        """Cancel a job that has not finished (a running one is stopped); Conflict once it
        succeeded or died."""
        return await self._run(calls.cancel(job, self.policy))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()
