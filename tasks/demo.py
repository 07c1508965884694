"""Demonstration job types for the development stack (`make run`), to watch retries, dead letters
and progress without writing a handler. Registered only when JOB_DEMO_TYPES is on, which it is
by default only with DEBUG=1: production settings never have them.

- `demo.flaky` fails its first `failures` attempts (2 by default) on purpose, then succeeds:
  with more failures than its 3 retries allow it ends in the dead-letter queue.
- `demo.slow` runs for `seconds` (20 by default), reporting its progress every second.
"""

import time

from rest_framework import serializers

from jobs.rules.registry import job_type

from .context import JobContext


class DemoError(Exception):
    """The failure `demo.flaky` raises on purpose."""


class FlakyPayload(serializers.Serializer):
    failures = serializers.IntegerField(required=False, min_value=0, max_value=100)


@job_type("demo.flaky", max_retries=3, timeout=30, validator=FlakyPayload)
def flaky(payload: dict, ctx: JobContext) -> dict:
    failures = payload.get("failures", 2)
    if ctx.attempt <= failures:
        raise DemoError(f"demo failure {ctx.attempt} of {failures}, on purpose (payload failures={failures})")
    return {"succeeded_on_attempt": ctx.attempt}


class SlowPayload(serializers.Serializer):
    seconds = serializers.IntegerField(required=False, min_value=1, max_value=600)


@job_type("demo.slow", max_retries=0, timeout=660, validator=SlowPayload)
def slow(payload: dict, ctx: JobContext) -> dict:
    seconds = payload.get("seconds", 20)
    for second in range(seconds):
        ctx.progress(100 * second // seconds, f"second {second + 1} of {seconds}")
        time.sleep(1)
    ctx.progress(100, "done")
    return {"slept_seconds": seconds}
