"""The job-type registry: `@job_type("email", max_retries=3, timeout=30)` on `handler(payload, ctx)`."""

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from jobs.rules.exceptions import DuplicateJobType, InvalidPayload, UnknownJobType
from jobs.rules.input_limits import name_problem
from jobs.rules.limits import UNLIMITED, Limit, make_limit

log = logging.getLogger("jobqueue.registry")

Handler = Callable[[dict, Any], Any]
# A payload validator is a DRF Serializer class or a callable that returns the cleaned
# payload (or None to keep it) and raises InvalidPayload / ValueError on bad input.
Validator = type[serializers.Serializer] | Callable[[dict], dict | None]


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    max_retries: int
    timeout: int | None
    validator: Validator | None = None
    # Uniqueness (jobs.services.unique): on when unique_for is set; the key is made from the
    # payload fields named, an explicit string, or (None) the whole payload.
    unique_for: int | None = None
    unique_key: str | tuple[str, ...] | None = None
    # Cluster-wide limits declared with the type (a run-time JobLimit overrides them).
    limit: Limit = UNLIMITED
    # Submitted by code only (jobs.services.submit.check_reachable): the task API's type.
    internal: bool = False

    def validate(self, payload: dict, *, owner: Any = None) -> dict:
        """The payload cleaned by the type's validator; a serializer finds the submitting user (None
        for code) as `self.context["owner"]`."""
        if self.validator is None:
            return payload
        if isinstance(self.validator, type) and issubclass(self.validator, serializers.Serializer):
            serializer = self.validator(data=payload, context={"owner": owner})
            if not serializer.is_valid():
                raise InvalidPayload(f"payload is not valid for type {self.name!r}", details=serializer.errors)
            # Keep the submitted JSON, not Python objects the serializer may have built.
            return {key: payload[key] for key in serializer.validated_data if key in payload}
        try:
            cleaned = self.validator(payload)
        except InvalidPayload:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidPayload(f"payload is not valid for type {self.name!r}: {exc}") from exc
        return payload if cleaned is None else cleaned


_registry: dict[str, JobType] = {}


def job_type(
    name: str,
    *,
    max_retries: int | None = None,
    timeout: int | None = None,
    validator: Validator | None = None,
    unique_for: int | None = None,
    unique_key: str | list[str] | tuple[str, ...] | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
    limit_key: str | None = None,
    internal: bool = False,
) -> Callable[[Handler], Handler]:
    """Register `handler(payload, ctx)` as the job type `name`. A name may be registered once.
    `unique_for` (seconds) makes its jobs unique: see jobs.services.unique. `concurrency` (at most N
    running at once across every worker node), `rate` (at most N starts per period: "60/minute") and
    `limit_key` (a payload field, each of whose values gets its own limits) limit the type across
    the cluster; a job over a limit waits in the database. `internal`: only code submits it; a
    client, or a person choosing its payload through a surface, needs the permission
    jobs.submit_internal_job (jobs.services.submit.check_reachable)."""
    if not name or len(name) > 100:
        raise ValueError("a job type name must have 1 to 100 characters")
    key = _unique_key_option(unique_for, unique_key)
    limit = make_limit(concurrency=concurrency, rate=rate, limit_key=limit_key)  # LimitProblem: a ValueError

    def register(handler: Handler) -> Handler:
        if name in _registry:
            existing = _registry[name].handler
            raise DuplicateJobType(
                f"job type {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        _registry[name] = JobType(
            name=name,
            handler=handler,
            max_retries=settings.JOB_DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            timeout=timeout,
            validator=validator,
            unique_for=unique_for,
            unique_key=key,
            limit=limit,
            internal=internal,
        )
        return handler

    return register


@dataclass(frozen=True)
class ScheduleDeclaration:
    """A recurring job declared in code; schedules_sync_code writes it to the database."""

    name: str
    job_type: str
    cron: str = ""
    interval_seconds: int | None = None
    timezone: str = "UTC"
    payload: dict | None = None
    priority: str = "medium"
    max_retries: int | None = None
    missed: str = "skip"
    catch_up_seconds: int | None = None
    overlap: str = "allow"


_schedules: dict[str, ScheduleDeclaration] = {}


def schedule(
    name: str,
    *,
    job_type: str,
    cron: str = "",
    interval_seconds: int | None = None,
    timezone: str = "UTC",
    payload: dict | None = None,
    priority: str = "medium",
    max_retries: int | None = None,
    missed: str = "skip",
    catch_up_seconds: int | None = None,
    overlap: str = "allow",
) -> ScheduleDeclaration:
    """Declare a recurring job next to its type, e.g. after `@job_type("report")`:
    `schedule("nightly-report", job_type="report", cron="0 3 * * *", timezone="Europe/Berlin")`. The
    mover writes the declared schedules to the database when it starts (code-defined schedules are
    read-only elsewhere); it checks them then, as schedule_create does."""
    declaration = ScheduleDeclaration(**locals())
    problem = name_problem(name, "schedule")
    if problem:
        raise ValueError(problem)
    if name in _schedules:
        raise ValueError(f"schedule {name!r} is already declared")
    _schedules[name] = declaration
    return declaration


def declared_schedules() -> dict[str, ScheduleDeclaration]:
    return dict(_schedules)


def _unique_key_option(
    unique_for: int | None, unique_key: str | list[str] | tuple[str, ...] | None
) -> str | tuple[str, ...] | None:
    """The declared uniqueness checked at import time: a bad declaration fails the deploy, not a submit."""
    if unique_for is not None and (isinstance(unique_for, bool) or not isinstance(unique_for, int) or unique_for < 0):
        raise ValueError("unique_for must be a whole number of seconds, 0 or more")
    if unique_key is None:
        return None
    if unique_for is None:
        raise ValueError("unique_key needs unique_for")
    if isinstance(unique_key, str):
        if not unique_key:
            raise ValueError("unique_key must not be empty")
        return unique_key
    fields = tuple(unique_key)
    if not fields or not all(isinstance(field, str) and field for field in fields):
        raise ValueError("unique_key must be a string or a non-empty list of payload field names")
    return fields


def get(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(n for n, t in _registry.items() if not t.internal)) or "none"
        raise UnknownJobType(f"unknown job type {name!r}; known types: {known}") from None


def names() -> list[str]:
    return sorted(_registry)


def load_handler_modules() -> None:
    """Import the built-in handlers (and the type of Django's tasks), the demonstration types when
    JOB_DEMO_TYPES is on, and every module named in JOB_HANDLER_MODULES."""
    demo = ["tasks.demo"] if settings.JOB_DEMO_TYPES else []
    for module in ["tasks.handlers", "tasks.django_task", *demo, *settings.JOB_HANDLER_MODULES]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"JOB_HANDLER_MODULES: cannot import {module!r}: {exc}") from exc
