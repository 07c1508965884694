"""Job types used by the tests, loaded in web and workers through JOB_HANDLER_MODULES."""

import contextlib
import os
import time

import redis
from celery.exceptions import SoftTimeLimitExceeded

from tasks import PermanentError, job_type

EFFECTS_KEY = "jq:test:effects"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@job_type("test.sleep", max_retries=0, timeout=60)
def sleep(payload, ctx):
    time.sleep(payload.get("ms", 100) / 1000)
    return {"slept_ms": payload.get("ms", 100)}


@job_type("test.count", max_retries=0, timeout=60)
def count(payload, ctx):
    """Counts every run of the handler per job id: the side effect that must happen once."""
    if payload.get("ms"):
        time.sleep(payload["ms"] / 1000)
    _redis().hincrby(EFFECTS_KEY, ctx.job_id, 1)
    return {"attempt": ctx.attempt}


@job_type("test.flaky", max_retries=3, timeout=60)
def flaky(payload, ctx):
    if ctx.attempt <= payload.get("fail_times", 2):
        raise ConnectionError(f"flaky failure on attempt {ctx.attempt}")
    return {"succeeded_on": ctx.attempt}


@job_type("test.permanent", max_retries=3, timeout=60)
def permanent(payload, ctx):
    raise PermanentError("this input can never work")


@job_type("test.progress", max_retries=0, timeout=60)
def progress(payload, ctx):
    ctx.progress(50, "half way")
    return {"done": True}


@job_type("test.steps", max_retries=0, timeout=120)
def steps(payload, ctx):
    """Works through `steps` steps of `ms` each, reporting its progress after each one."""
    total = payload.get("steps", 10)
    for step in range(1, total + 1):
        time.sleep(payload.get("ms", 500) / 1000)
        ctx.progress(step * 100 // total, f"step {step} of {total}")
    return {"steps": total}


@job_type("test.fail", max_retries=2, timeout=60)
def fail(payload, ctx):
    """Fails until its payload says otherwise (for dead-letter and edit-and-retry tests)."""
    if payload.get("fail", True):
        raise RuntimeError(f"failing as asked, attempt {ctx.attempt}")
    return {"fixed": True}


@job_type("test.hang", max_retries=1, timeout=1)
def hang(payload, ctx):
    time.sleep(payload.get("seconds", 30))


@job_type("test.stubborn", max_retries=0, timeout=1)
def stubborn(payload, ctx):
    """Swallows the soft time limit, so only the hard limit can stop it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.1)


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")


@job_type("test.misbehave", max_retries=0, timeout=30)
def misbehave(payload, ctx):
    """Misbehaves as the payload asks, to show the worker and the job record survive it."""
    from django.conf import settings

    kind = payload["kind"]
    if kind == "non_json":
        return {"when": object()}
    if kind == "huge":
        return {"blob": "x" * (settings.JOB_MAX_RESULT_BYTES + 1)}
    if kind == "unstorable":
        return {"text": "a\x00b", "surrogate": "\ud800"}
    if kind == "leak":
        raise RuntimeError(f"SMTP login refused for password {settings.EMAIL_HOST_PASSWORD}")
    if kind == "unprintable":
        raise Unprintable()
    if kind == "exit":
        raise SystemExit("the handler exits")  # as sys.exit() does: not the pool process's end
    raise ValueError(f"unknown kind {kind}")


@job_type("test.slow_first", max_retries=1, timeout=60)
def slow_first(payload, ctx):
    """Slow on the first attempt only: a worker killed during it leaves a lost attempt, then it succeeds."""
    if ctx.attempt == 1:
        time.sleep(payload.get("seconds", 30))
    return {"attempt": ctx.attempt}


EFFECTS_FILE_ENV = "JQ_TEST_EFFECTS_FILE"


@job_type("test.effect", max_retries=3, timeout=60)
def effect(payload, ctx):
    """Appends one line per run of the handler to a file (it outlives Redis and PostgreSQL
    restarts): the side effect the fault tests count. Sleeps `ms` first, so a fault can catch it mid-run."""
    if payload.get("ms"):
        time.sleep(payload["ms"] / 1000)
    line = f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ[EFFECTS_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: appended whole, never interleaved
    finally:
        os.close(fd)
    return {"attempt": ctx.attempt}


# Types with cluster-wide limits (tests/integration/test_limits.py, tests/e2e/test_limits_cluster.py).
@job_type("test.limited", max_retries=0, timeout=60, concurrency=2)
def limited(payload, ctx):
    """Its result says when the handler itself ran, as test.per_key's."""
    started = time.time()
    time.sleep(payload.get("ms", 300) / 1000)
    return {"slept_ms": payload.get("ms", 300), "ran": [started, time.time()]}


@job_type("test.per_key", max_retries=0, timeout=60, concurrency=1, limit_key="key")
def per_key(payload, ctx):
    """Its result says when the handler itself ran: a limit is about handlers running at once."""
    started = time.time()
    time.sleep(payload.get("ms", 300) / 1000)
    return {"key": payload.get("key"), "ran": [started, time.time()]}


@job_type("test.rated", max_retries=0, timeout=60, rate="60/minute")
def rated(payload, ctx):
    return {"n": payload.get("n")}


@job_type("test.limited_fails", max_retries=0, timeout=60, concurrency=1)
def limited_fails(payload, ctx):
    raise ConnectionError("limited and failing")


@job_type("test.ticker", max_retries=3, timeout=120)
def ticker(payload, ctx):
    """Runs `seconds` in 0.1 s steps, appending a line with the time to `file` at each (the side
    effect a cancel must stop), calling ctx.check() at each step when `check` is true
    (tests/e2e/test_cancel_running.py)."""
    steps = round(payload.get("seconds", 30) * 10)
    with open(payload["file"], "a") as ticks:
        for _ in range(steps):
            if payload.get("check", True):
                ctx.check()
            ticks.write(f"{time.time()}\n")
            ticks.flush()
            time.sleep(0.1)
    return {"ticks": steps}
