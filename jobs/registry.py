"""The job-type registry: `@job_type("email", max_retries=3, timeout=30)` on `handler(payload, ctx)`."""

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from jobs.exceptions import DuplicateJobType, InvalidPayload, UnknownJobType
from jobs.rates import UNLIMITED, Limit, make_limit

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
    # Cluster-wide limits declared with the type (a run-time JobLimit overrides them).
    limit: Limit = UNLIMITED

    def validate(self, payload: dict) -> dict:
        if self.validator is None:
            return payload
        if isinstance(self.validator, type) and issubclass(self.validator, serializers.Serializer):
            serializer = self.validator(data=payload)
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
    concurrency: int | None = None,
    rate: str | None = None,
    limit_key: str | None = None,
) -> Callable[[Handler], Handler]:
    """Register `handler(payload, ctx)` as the job type `name`. A name may be registered once.

    `concurrency` (at most N running at once across every worker node), `rate` (at most N starts
    per period: "60/minute") and `limit_key` (a payload field, each of whose values gets its own
    limits) limit the type across the cluster; a job over a limit waits in the database.
    """
    if not name or len(name) > 100:
        raise ValueError("a job type name must have 1 to 100 characters")
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
            limit=limit,
        )
        return handler

    return register


def get(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownJobType(f"unknown job type {name!r}; known types: {known}") from None


def names() -> list[str]:
    return sorted(_registry)


def unregister(name: str) -> None:
    """Remove a type (for tests that register throwaway types)."""
    _registry.pop(name, None)


def load_handler_modules() -> None:
    """Import the built-in handlers, the demonstration types when JOB_DEMO_TYPES is on, and every
    module named in JOB_HANDLER_MODULES."""
    demo = ["tasks.demo"] if settings.JOB_DEMO_TYPES else []
    for module in ["tasks.handlers", *demo, *settings.JOB_HANDLER_MODULES]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"JOB_HANDLER_MODULES: cannot import {module!r}: {exc}") from exc
