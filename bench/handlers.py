"""Job types for the benchmarks, loaded through JOB_HANDLER_MODULES=bench.handlers."""

import time

from tasks import job_type


@job_type("bench.sleep", max_retries=0, timeout=60)
def sleep(payload, ctx):
    time.sleep(payload.get("ms", 10) / 1000)


@job_type("bench.work", max_retries=0, timeout=60)
def work(payload, ctx):
    """Runs `ms` milliseconds; the limits scenario runs it unlimited and under a concurrency limit."""
    if payload.get("ms"):
        time.sleep(payload["ms"] / 1000)
