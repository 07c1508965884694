"""The rules of the backend of Django's task API that need no services: the queue a priority picks,
the API's status of each job status, and the exception class a failed attempt names."""

import traceback

import pytest

from jobs.adapters.task_api import TaskResultStatus
from jobs.rules.states import Status
from jobs.tasks_backend import RESULT_STATUS, as_json, exception_path, queue_for


class Outer:
    class Nested(Exception):
        pass


def formatted(exception: BaseException) -> str:
    try:
        raise exception
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


def test_every_job_status_has_a_status_of_the_api():
    assert set(RESULT_STATUS) == set(Status.values)
    assert {status for status, result in RESULT_STATUS.items() if result == TaskResultStatus.READY} == {
        Status.SCHEDULED,
        Status.QUEUED,
        Status.WAITING,
        Status.RETRYING,
    }
    assert RESULT_STATUS[Status.DEAD] == RESULT_STATUS[Status.CANCELLED] == TaskResultStatus.FAILED


@pytest.mark.parametrize("priority, queue", [(100, "high"), (1, "high"), (0, "medium"), (-1, "low"), (-100, "low")])
def test_a_positive_priority_is_high_zero_medium_and_a_negative_one_low(priority, queue):
    assert queue_for(priority) == queue


def test_the_exception_class_is_read_from_the_last_block_of_the_traceback():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise Outer.Nested("outer: with a colon\nValueError: and a second line") from inner
    except Outer.Nested as outer:
        chained = "".join(traceback.format_exception(outer))

    assert exception_path("Nested", chained) == f"{__name__}.Outer.Nested"
    assert exception_path("ValueError", formatted(ValueError("bare"))) == "builtins.ValueError"
    assert exception_path("ValueError", formatted(ValueError())) == "builtins.ValueError"
    # Recorded by jobqueue, not raised in the task: no traceback to read.
    assert exception_path("TimeoutError", "") == "builtins.TimeoutError"
    assert exception_path("WorkerLost", "") == "WorkerLost"


def test_json_arguments_keep_their_shape_or_are_refused():
    assert as_json([(1, 2), {"a": b"x"}, None, 1.5]) == [[1, 2], {"a": "x"}, None, 1.5]
    with pytest.raises(TypeError):
        as_json([{1: "one"}])
    with pytest.raises(ValueError):
        as_json([float("inf")])
    with pytest.raises(TypeError):
        as_json([{1, 2}])
