"""Django's task API on jobqueue (jobs/tasks_backend.py): enqueue, the queue a priority picks,
refused arguments and tasks, and get_result as the job moves, on real PostgreSQL and Redis. The
attempts run in this process through the services a worker calls; tests/e2e/test_django_tasks.py
runs them on real workers."""

import asyncio
import math
import sys
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from jobs import broker, registry, services
from jobs.exceptions import InvalidPayload, PermanentError
from jobs.models import Job
from jobs.task_api import (
    InvalidTaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from jobs.tasks_backend import TASK_JOB_TYPE, JobQueueBackend
from tasks import outcomes
from tasks.context import JobContext
from tests.lifecycle import job_succeed
from tests.tasks_app import tasks
from tests.tasks_app.tasks import Declined, add, charge, describe, double

try:
    from django.tasks.exceptions import TaskResultMismatch
except ImportError:
    from django_tasks.exceptions import TaskResultMismatch


def queue_lengths() -> dict[str, int]:
    return broker.queue_lengths()


def run_attempt(result_id: str, worker: str = "w1@host"):
    """One attempt as the worker's task makes it: the claim, the handler, its outcome recorded."""
    claim = services.job_claim(job_id=result_id, worker=worker)
    assert claim is not None
    handler = registry.get(TASK_JOB_TYPE).handler
    try:
        value = handler(claim.payload, JobContext(job_id=claim.job_id, attempt=claim.attempt, serial=claim.serial))
    except Exception as exc:
        outcomes.failed(claim, exc, task_id=f"task-{claim.serial}")
        return exc
    job_succeed(job_id=claim.job_id, serial=claim.serial, result=value, claim=claim)
    return value


def test_the_priority_picks_the_queue_and_a_queue_name_names_one():
    high = add.using(priority=10).enqueue(1, 2)
    medium = add.enqueue(1, 2)
    low = charge.enqueue("4242")  # declared with priority=-10
    named = add.using(priority=50, queue_name="low").enqueue(1, 2)

    queues = dict(Job.objects.values_list("pk", "priority"))
    assert [queues[uuid.UUID(r.id)] for r in (high, medium, low, named)] == ["high", "medium", "low", "low"]
    assert queue_lengths() == {"high": 1, "medium": 1, "low": 2}
    assert high.status == TaskResultStatus.READY and high.task.priority == 10
    assert high.args == [1, 2] and high.kwargs == {} and high.backend == "default"
    assert high.enqueued_at is not None and high.started_at is None and high.worker_ids == []


def test_enqueue_validates_the_task_against_the_backend_it_goes_to():
    """A task made when its queue was configured, enqueued after the queue left QUEUES: the
    backend's own alias, and still the API's InvalidTask, as Django's backends answer."""
    narrowed = JobQueueBackend("default", {"QUEUES": ["default"]})

    with pytest.raises(InvalidTaskError, match="Queue 'low' is not valid"):
        narrowed.enqueue(add.using(queue_name="low"), [1, 2], {})
    assert not Job.objects.exists()


def test_get_result_gives_the_task_as_it_was_enqueued():
    when = timezone.now() + timedelta(minutes=5)

    enqueued = add.using(priority=7, queue_name="low", run_after=when).enqueue(1, 2)
    plain = add.enqueue(3, 4)

    task = add.get_result(enqueued.id).task
    assert (task.priority, task.queue_name, task.run_after, task.backend) == (7, "low", when, "default")
    assert task.func is add.func
    task = add.get_result(plain.id).task
    assert (task.priority, task.queue_name, task.run_after) == (0, "default", None)


def test_queue_names_are_the_configured_queues():
    with pytest.raises(InvalidTaskError, match="Queue 'emails' is not valid"):
        add.using(queue_name="emails")
    narrow = JobQueueBackend("narrow", {"QUEUES": ["default", "low"]})
    assert narrow.queues == {"default", "low"}
    with pytest.raises(ImproperlyConfigured, match="may name default, high, low, medium"):
        JobQueueBackend("wide", {"QUEUES": ["default", "emails"]})


@pytest.mark.parametrize(
    "args, error",
    [
        ((object(),), TypeError),
        (({1: "one"},), TypeError),  # JSON's keys are strings: the task would get {"1": "one"}
        ((math.nan,), ValueError),
        ((b"\xff",), ValueError),
        ((timezone.now(),), TypeError),
    ],
    ids=["object", "int key", "nan", "bytes not UTF-8", "datetime"],
)
def test_arguments_json_cannot_carry_are_refused_at_enqueue(args, error):
    with pytest.raises(error):
        add.enqueue(*args)
    with pytest.raises(error):
        add.enqueue(a=args[0], b=1)

    assert not Job.objects.exists()
    assert queue_lengths() == {"high": 0, "medium": 0, "low": 0}


def test_arguments_are_normalised_as_the_api_does():
    result = add.enqueue((1, 2), b=b"x")

    job = Job.objects.get(pk=result.id)
    assert job.payload["args"] == [[1, 2]] and job.payload["kwargs"] == {"b": "x"}
    assert result.args == [[1, 2]]


def test_run_after_makes_the_job_wait_in_the_database():
    when = timezone.now() + timedelta(minutes=5)

    result = add.using(run_after=when).enqueue(1, 2)

    job = Job.objects.get(pk=result.id)
    assert (job.status, job.run_at) == ("scheduled", when)
    assert result.status == TaskResultStatus.READY and result.task.run_after == when
    assert queue_lengths() == {"high": 0, "medium": 0, "low": 0}


@override_settings(JOB_MAX_DELAY_SECONDS=60)
def test_a_run_after_beyond_the_horizon_is_refused_with_the_apis_error():
    with pytest.raises(InvalidTaskError, match="run_at must be within 60 seconds"):
        add.using(run_after=timezone.now() + timedelta(minutes=5)).enqueue(1, 2)
    assert not Job.objects.exists()


def test_get_result_follows_the_job_to_success():
    result = add.enqueue(2, 3)
    assert add.get_result(result.id).status == TaskResultStatus.READY

    claim = services.job_claim(job_id=result.id, worker="w1@host")
    running = add.get_result(result.id)
    assert running.status == TaskResultStatus.RUNNING and running.worker_ids == ["w1@host"]
    assert running.started_at == running.last_attempted_at == claim.started_at
    with pytest.raises(ValueError, match="not finished"):
        _ = running.return_value

    job_succeed(job_id=claim.job_id, serial=claim.serial, result=5, claim=claim)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.is_finished and result.finished_at >= result.started_at and result.errors == []
    assert result.attempts == 1


def test_a_task_that_raises_is_retried_then_fails_with_its_exception_class_and_traceback():
    result = charge.enqueue("4242")
    retries = settings.JOB_TASKS_MAX_RETRIES
    assert retries == settings.JOB_DEFAULT_MAX_RETRIES == 3

    for attempt in range(1, retries + 2):
        assert isinstance(run_attempt(result.id, worker=f"w{attempt}@host"), Declined)
        between = charge.get_result(result.id)
        if attempt <= retries:
            assert between.status == TaskResultStatus.READY and len(between.errors) == attempt
            services.job_run_now(job_id=result.id)  # its backoff over at once

    failed = charge.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED and failed.is_finished
    assert failed.worker_ids == ["w1@host", "w2@host", "w3@host", "w4@host"] and failed.attempts == 4
    recorded = failed.errors[-1]
    assert len(failed.errors) == 4
    assert recorded.exception_class_path == "tests.tasks_app.tasks.Declined"
    assert recorded.exception_class is Declined
    assert "card 4242 declined" in recorded.traceback
    assert 'raise Declined(f"card {card} declined")' in recorded.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value


def test_a_failure_that_will_be_retried_is_ready_with_its_error_so_far():
    result = add.enqueue(1, "x")

    run_attempt(result.id)

    retrying = add.get_result(result.id)
    assert Job.objects.get(pk=result.id).status == "retrying"
    assert retrying.status == TaskResultStatus.READY and retrying.last_attempted_at is not None
    assert [e.exception_class_path for e in retrying.errors] == ["builtins.TypeError"]
    assert retrying.errors[0].exception_class is TypeError


def test_a_task_raising_permanent_error_fails_at_once():
    result = tasks.refuse.enqueue("no")

    assert isinstance(run_attempt(result.id), PermanentError)

    failed = tasks.refuse.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED and failed.attempts == 1
    assert failed.errors[0].exception_class_path == "jobs.exceptions.PermanentError"


def test_a_cancelled_task_is_failed():
    result = add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    services.job_cancel(job_id=result.id)

    cancelled = add.get_result(result.id)

    assert cancelled.status == TaskResultStatus.FAILED and cancelled.finished_at is not None
    assert cancelled.errors == [] and cancelled.worker_ids == []


def test_a_task_taking_its_context_and_a_coroutine_task_run():
    described = describe.enqueue(note="hi")
    doubled = double.enqueue(21)

    assert run_attempt(described.id, worker="w7@host") == {
        "id": described.id,
        "attempt": 1,
        "worker": "w7@host",
        "note": "hi",
    }
    assert run_attempt(doubled.id) == 42
    assert double.get_result(doubled.id).return_value == 42


def test_a_return_value_json_cannot_carry_fails_the_attempt():
    result = tasks.not_json.enqueue()

    error = run_attempt(result.id)

    assert isinstance(error, TypeError)
    assert tasks.not_json.get_result(result.id).errors[0].exception_class_path == "builtins.TypeError"


def test_unknown_result_ids_do_not_exist():
    noop, _ = services.job_submit(type="noop", payload={})
    for unknown in (str(uuid.uuid4()), "not-a-uuid", str(noop.id)):
        with pytest.raises(TaskResultDoesNotExist):
            add.get_result(unknown)
    other = charge.enqueue("1")
    with pytest.raises(TaskResultMismatch):
        add.get_result(other.id)


def test_enqueue_and_get_result_from_async_code():
    async def flow():
        result = await add.aenqueue(4, 5)
        return result, await add.aget_result(result.id)

    enqueued, fetched = asyncio.run(flow())

    assert fetched.id == enqueued.id and fetched.status == TaskResultStatus.READY and fetched.args == [4, 5]


def test_enqueue_sends_the_apis_signal():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id))

    task_enqueued.connect(receiver)
    try:
        result = add.enqueue(1, 1)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(JobQueueBackend, result.id)]


def test_inside_a_transaction_the_job_and_its_message_exist_only_after_the_commit():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        add.enqueue(1, 2)
        assert Job.objects.count() == 1  # visible to its own transaction only
        assert queue_lengths()["medium"] == 0
        raise Rollback
    assert not Job.objects.exists() and queue_lengths()["medium"] == 0

    with transaction.atomic():
        result = add.enqueue(1, 2)
        assert queue_lengths()["medium"] == 0
    assert Job.objects.filter(pk=result.id, status="queued").exists() and queue_lengths()["medium"] == 1


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"task": "tests.tasks_app.tasks.plain"}, "is not a task"),
        ({"task": "tests.tasks_app.tasks.missing"}, "cannot be found"),
        ({"task": "antigravity.fly"}, "not in an installed app"),
        ({"task": "tests.tasks_app.tasks.add", "args": {}}, "args must be a list"),
        ({"task": "tests.tasks_app.tasks.add", "takes_context": True}, "takes_context must be False"),
        ({"task": "tests.tasks_app.tasks.add", "retries": 3}, "unknown fields retries"),
        ({"task": "tests.tasks_app.tasks.add", "priority": 101}, "priority must be"),
        ({"task": "tests.tasks_app.tasks.add", "queue_name": "emails"}, "queue_name must be"),
        ({"task": "tests.tasks_app.tasks.add", "run_after": "tomorrow"}, "run_after must be"),
        ({}, "dotted path"),
    ],
)
def test_a_submitted_payload_must_name_a_task_of_the_project(payload, problem):
    with pytest.raises(InvalidPayload, match=problem):
        services.job_submit(type=TASK_JOB_TYPE, payload=payload)
    assert "antigravity" not in sys.modules  # a path outside the project is never imported


def test_over_the_api_a_bad_task_is_a_400_on_the_payload(client_for):
    client = client_for("lead", staff=True, perms=("submit_internal_job",))  # clients may not at all

    answer = client.post(
        "/submit-job", {"type": TASK_JOB_TYPE, "payload": {"task": "tests.tasks_app.tasks.plain"}}, format="json"
    )
    ok = client.post(
        "/submit-job",
        {"type": TASK_JOB_TYPE, "payload": {"task": "tests.tasks_app.tasks.add", "args": [1, 2]}},
        format="json",
    )

    assert answer.status_code == 400 and "is not a task" in str(answer.json()["payload"])
    assert ok.status_code == 201, ok.json()
    assert add.get_result(ok.json()["id"]).args == [1, 2]


@pytest.mark.parametrize("how, exception", [("exit", SystemExit), ("interrupt", KeyboardInterrupt)])
def test_a_task_that_exits_fails_its_attempt_and_sends_task_finished(how, exception):
    """As Django's own backends do: SystemExit and KeyboardInterrupt fail the task like any error.
    (tests/e2e/test_django_tasks.py checks that a worker's pool process survives them.)"""
    seen = []

    def finished(sender, task_result, **kwargs):
        seen.append((task_result.status, [error.exception_class for error in task_result.errors]))

    result = tasks.exits.enqueue(how)
    claim = services.job_claim(job_id=result.id, worker="w1@host")
    task_finished.connect(finished)
    try:
        with pytest.raises(exception):
            registry.get(TASK_JOB_TYPE).handler(claim.payload, JobContext(claim.job_id, claim.attempt, claim.serial))
    finally:
        task_finished.disconnect(finished)

    assert seen == [(TaskResultStatus.FAILED, [exception])]


def test_a_task_gone_from_the_code_is_a_permanent_failure_of_its_job():
    handler = registry.get(TASK_JOB_TYPE).handler
    with pytest.raises(PermanentError, match="is not a task"):
        handler({"task": "tests.tasks_app.tasks.plain", "args": [1], "kwargs": {}}, None)


def test_an_attempt_sends_the_apis_started_and_finished_signals_and_a_failing_listener_changes_nothing():
    seen = []

    def started(sender, task_result, **kwargs):
        seen.append(("started", task_result.status, task_result.worker_ids))

    def finished(sender, task_result, **kwargs):
        value = task_result.return_value if task_result.status == TaskResultStatus.SUCCESSFUL else None
        seen.append(("finished", task_result.status, value, [e.exception_class_path for e in task_result.errors]))
        raise RuntimeError("a listener that fails")

    task_started.connect(started)
    task_finished.connect(finished)
    try:
        total, declined = add.enqueue(2, 3), charge.enqueue("1")
        assert run_attempt(total.id) == 5
        assert isinstance(run_attempt(declined.id), Declined)
    finally:
        task_started.disconnect(started)
        task_finished.disconnect(finished)

    assert seen == [
        ("started", TaskResultStatus.RUNNING, ["w1@host"]),
        ("finished", TaskResultStatus.SUCCESSFUL, 5, []),
        ("started", TaskResultStatus.RUNNING, ["w1@host"]),
        ("finished", TaskResultStatus.FAILED, None, ["tests.tasks_app.tasks.Declined"]),
    ]
    assert add.get_result(total.id).status == TaskResultStatus.SUCCESSFUL
