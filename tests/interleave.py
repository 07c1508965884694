"""Deterministic races on PostgreSQL: a competing write made on a connection of its own at one
exact point of a service, between its read and its write, instead of hoping two threads meet."""

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

# A competing write that neither ends nor waits for a lock by then is a bug of the test.
PATIENCE = 30.0


@contextmanager
def before_statement(pattern: str, write: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """While inside, the first statement of this thread's connection whose SQL matches `pattern`
    runs only once `write`, run in another thread on its own connection, has ended or waits for
    a lock this connection holds (it ends after this one commits). Yields a dict that holds, once
    the block is left, write's `result` or `error`, and whether it had to `wait` for the lock.
    Only statements run through Django's cursors are seen (not the store's raw psycopg ones)."""
    with _interleaved(pattern, write, after=False) as outcome:
        yield outcome


@contextmanager
def after_statement(pattern: str, write: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """`before_statement`, with `write` made right after the matching statement instead."""
    with _interleaved(pattern, write, after=True) as outcome:
        yield outcome


@contextmanager
def _interleaved(pattern: str, write: Callable[[], Any], *, after: bool) -> Iterator[dict[str, Any]]:
    outcome: dict[str, Any] = {}
    ready = threading.Event()
    thread = threading.Thread(target=_run, args=(write, outcome, ready), daemon=True)

    def compete() -> None:
        outcome["fired"] = True
        thread.start()
        outcome["wait"] = _ended_or_waiting(thread, ready, outcome)

    def intercept(execute, sql, params, many, context):
        if "fired" in outcome or not re.search(pattern, sql):
            return execute(sql, params, many, context)
        if not after:
            compete()
            return execute(sql, params, many, context)
        result = execute(sql, params, many, context)
        compete()
        return result

    with connection.execute_wrapper(intercept):
        yield outcome
    assert outcome.get("fired"), f"no statement matched {pattern!r}"
    thread.join(PATIENCE)
    assert not thread.is_alive(), "the competing write never ended"


def _run(write: Callable[[], Any], outcome: dict[str, Any], ready: threading.Event) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            outcome["pid"] = cursor.fetchone()[0]
        ready.set()
        outcome["result"] = write()
    except Exception as exc:
        outcome["error"] = exc
    finally:
        ready.set()
        connection.close()


def _ended_or_waiting(thread: threading.Thread, ready: threading.Event, outcome: dict[str, Any]) -> bool:
    """True once the write waits for a lock, False once it ended."""
    assert ready.wait(PATIENCE)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return False
        with connection.cursor() as cursor:  # pg_locks is read live, never from a snapshot
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [outcome["pid"]])
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.01)
    raise AssertionError("the competing write neither ended nor waited for a lock")
