"""Pool processes' log lines: buffered, written by a thread, in order."""

import io
import logging
import time

import pytest

from tasks import log_buffer


@pytest.fixture
def logger():
    """A logger of its own, its lines into a string, wrapped like a pool process's root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    own = logging.Logger("test.log_buffer", logging.INFO)  # not registered: pytest adds no handler
    own.propagate = False
    own.addHandler(handler)
    buffers = log_buffer.install(own)
    yield own, stream, buffers
    for buffered in buffers:
        own.removeHandler(buffered)
        buffered.close()


def written(stream) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_line_is_held_then_written_by_the_flusher_thread(logger):
    own, stream, (buffered,) = logger
    own.info("job started")

    assert written(stream) == [] and buffered.waiting == 1
    deadline = time.monotonic() + 5
    while not written(stream) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written(stream) == ["INFO job started"]


def test_lines_keep_their_order_and_an_error_writes_at_once(logger):
    own, stream, _ = logger
    for n in range(5):
        own.info("line %d", n)
    own.error("failed")

    assert written(stream) == [*(f"INFO line {n}" for n in range(5)), "ERROR failed"]


def test_the_message_is_made_when_logged(logger):
    own, stream, (buffered,) = logger
    facts = {"status": "running"}
    own.info("job %s", facts)
    facts["status"] = "changed later"
    buffered.flush()

    assert written(stream) == ["INFO job {'status': 'running'}"]


def test_a_full_buffer_is_written_by_the_thread_that_logs(logger, monkeypatch):
    own, stream, (buffered,) = logger
    monkeypatch.setattr(log_buffer, "CAPACITY", 3)
    own.info("a")
    own.info("b")
    own.info("c")

    assert written(stream) == ["INFO a", "INFO b", "INFO c"] and buffered.waiting == 0


def test_closing_writes_what_waits(logger):
    own, stream, (buffered,) = logger
    own.warning("last words")
    buffered.close()

    assert written(stream) == ["WARNING last words"]


def test_a_line_that_cannot_be_made_never_fails_the_caller(logger, monkeypatch):
    own, stream, (buffered,) = logger
    reported = []
    monkeypatch.setattr(buffered, "handleError", reported.append)
    own.info("%d jobs", "not a number")
    own.info("next line")
    buffered.flush()

    assert written(stream) == ["INFO next line"] and len(reported) == 1
