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


# The partition suite's job type (tests/partitions/): its records go to files, outside the system under test.
HISTORY_DIR_ENV = "JQ_HISTORY_DIR"
HISTORY_NODE_ENV = "JQ_HISTORY_NODE"


def _history_write(path: str, event: str, run: dict, **fields) -> None:
    import json  # here, so that this part of the file only adds to it

    line = json.dumps({"e": event, **run, "t": time.time(), **fields}, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write of one line: whole, never interleaved
    finally:
        os.close(fd)


@job_type("test.history", max_retries=3, timeout=120)
def history(payload, ctx):
    """Runs `seconds` in 0.2 s steps, recording its start, a tick per step (its side effect) and its
    end in $JQ_HISTORY_DIR/<node>-<pid>.jsonl, for tests/partitions/history.py to check. With `check`
    (the default) it asks ctx.check() before each tick; with `fail` it raises at the end."""
    run = {"job": ctx.job_id, "serial": ctx.serial, "node": os.environ.get(HISTORY_NODE_ENV, "-"), "pid": os.getpid()}
    path = os.path.join(os.environ[HISTORY_DIR_ENV], f"{run['node']}-{run['pid']}.jsonl")
    check = getattr(ctx, "check", None) if payload.get("check", True) else None  # ctx.check() came with fencing
    _history_write(path, "start", run)
    try:
        for _ in range(round(payload.get("seconds", 1) / 0.2)):
            time.sleep(0.2)
            if check is not None:
                check()
            _history_write(path, "tick", run)
        if payload.get("fail"):
            raise RuntimeError(f"failing as asked, serial {ctx.serial}")
    except BaseException as exc:
        _history_write(path, "end", run, ok=False, error=f"{type(exc).__name__}: {exc}")
        raise
    _history_write(path, "end", run, ok=True, error=None)
    return {"serial": ctx.serial}


# The fence (tests/e2e/test_fencing.py): each run writes JSON lines (start, ticks, end) to the
# payload's `file`, by its own clock, with the node (env JQ_HISTORY_NODE), pid and serial.
def _run_line(path: str, ctx, event: str, **more) -> None:
    run = {"job": ctx.job_id, "serial": ctx.fencing_token, "attempt": ctx.attempt}
    _history_write(path, event, run | {"node": os.environ.get(HISTORY_NODE_ENV, ""), "pid": os.getpid()}, **more)


@job_type("test.hold_gil", max_retries=1, timeout=120)
def hold_gil(payload, ctx):
    """Its first attempt holds the GIL for `seconds` in C code (tests/native/hold_gil.c, built by
    the test and put on PYTHONPATH), so the lease keeper of its process cannot run; later ones return."""
    _run_line(payload["file"], ctx, "start")
    if ctx.attempt == 1:
        import hold_gil as native

        native.hold(payload["seconds"])
    _run_line(payload["file"], ctx, "end", ok=True)
    return {"attempt": ctx.attempt}


@job_type("test.fenceable", max_retries=1, timeout=120)
def fenceable(payload, ctx):
    """Works `seconds` in steps of 0.1 s (counted, so a process frozen meanwhile resumes mid-way),
    a tick line each, calling ctx.check() before each; an end line says how it ended
    (AttemptFenced raised by ctx.check(), or done)."""
    _run_line(payload["file"], ctx, "start")
    try:
        for _ in range(round(payload.get("seconds", 5) * 10)):
            ctx.check()
            _run_line(payload["file"], ctx, "tick")
            time.sleep(0.1)
    except Exception as exc:
        _run_line(payload["file"], ctx, "end", ok=False, error=f"{type(exc).__name__}: {exc}")
        raise
    _run_line(payload["file"], ctx, "end", ok=True, error=None)
    return {"attempt": ctx.attempt}


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
