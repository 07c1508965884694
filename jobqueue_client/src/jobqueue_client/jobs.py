"""Jobs as the API represents them, and submissions as it takes them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

# Statuses after which nothing runs unless an operator steps in (a dead job can be retried by one).
FINISHED: frozenset[str] = frozenset({"succeeded", "dead", "cancelled"})


# The fields of a Job taken from the answer as they are, and its times.
_AS_GIVEN = ("priority", "payload", "attempts", "retries", "max_retries", "timeout", "result", "idempotency_key")
_TIMES = ("run_at", "created_at", "started_at", "finished_at")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class JobFailure:
    """The latest failure of a job, or of one attempt."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> JobFailure | None:
        if not data:
            return None
        return cls(type=data.get("type", ""), message=data.get("message", ""), traceback=data.get("traceback"))


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime | None
    finished_at: datetime | None
    worker: str
    outcome: str
    error: JobFailure | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            number=data["number"],
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            worker=data.get("worker") or "",
            outcome=data.get("outcome") or "",
            error=JobFailure.from_api(data.get("error")),
        )


@dataclass(frozen=True)
class Progress:
    percent: int = 0
    message: str = ""


@dataclass(frozen=True)
class Job:
    """A job as the API answered it. A bulk submission answers with a short form: `id`, `type`,
    `status`, `priority`, `run_at`, `idempotency_key`, `created`, `duplicate`; the other fields
    are then None or empty (`get(job.id)` reads them all). `raw` keeps the answer as it came."""

    id: str
    type: str
    status: str
    priority: str | None = None
    payload: dict[str, Any] | None = None
    attempts: int | None = None
    retries: int | None = None
    max_retries: int | None = None
    timeout: int | None = None
    result: Any = None
    error: JobFailure | None = None
    reason: str = ""
    progress: Progress | None = None
    run_at: datetime | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    history: tuple[Attempt, ...] = ()
    # Submit answers only: whether this call made the job, and why not ("idempotency_key", "unique_key").
    created: bool | None = None
    duplicate: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, created: bool | None = None) -> Job:
        progress = data.get("progress")
        return cls(
            id=str(data["id"]),
            type=data["type"],
            status=data["status"],
            **{name: data.get(name) for name in _AS_GIVEN},
            **{name: _time(data.get(name)) for name in _TIMES},
            error=JobFailure.from_api(data.get("error")),
            reason=data.get("reason") or "",
            progress=Progress(progress.get("percent", 0), progress.get("message", "")) if progress else None,
            history=tuple(Attempt.from_api(item) for item in data.get("history") or ()),
            created=data.get("created", created),
            duplicate=data.get("duplicate"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Submission:
    """One job to submit. Without an `idempotency_key` the client makes one (a uuid4) per call
    and sends it again on each of its retries, so a retried submit answers with the same job."""

    type: str
    payload: Mapping[str, Any] | None = None
    priority: str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | str | None = None
    max_retries: int | None = None
    timeout: int | None = None
    idempotency_key: str | None = None
    unique_for: int | None = None
    unique_key: str | list[str] | None = None

    def keyed(self) -> Submission:
        """This submission with an idempotency key: its own, or a new one."""
        if self.idempotency_key:
            return self
        return replace(self, idempotency_key=str(uuid.uuid4()))

    def to_api(self) -> dict[str, Any]:
        """The request body: the fields given, and nothing for those left out (the server's defaults)."""
        body: dict[str, Any] = {"type": self.type, "payload": dict(self.payload or {})}
        delay = self.delay.total_seconds() if isinstance(self.delay, timedelta) else self.delay
        run_at = self.run_at.isoformat() if isinstance(self.run_at, datetime) else self.run_at
        optional = {
            "priority": self.priority,
            "delay": delay,
            "run_at": run_at,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "idempotency_key": self.idempotency_key,
            "unique_for": self.unique_for,
            "unique_key": self.unique_key,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        return body
