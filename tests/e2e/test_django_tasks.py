"""Django's task API on real workers: tasks of a project's app (tests/tasks_app, whose settings the
workers run with) enqueued through jobqueue's backend in this process, run by Celery workers, their
results read back; delayed tasks started by the mover; enqueue inside a transaction."""

import time
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.adapters import dispatch
from jobs.adapters.broker import UNACKED, key, queue_lengths
from jobs.adapters.store import store
from jobs.adapters.task_api import TaskResultStatus
from jobs.models import Job, JobAttempt
from jobs.services import job_submit
from jobs.services.submit import build_job
from jobs.tasks_backend import TASK_JOB_TYPE
from tests.servers import wait_for
from tests.tasks_app.tasks import COUNTS_KEY, add, charge, count, describe, double, exits, started_at

from .conftest import wait_until_terminal

# The workers run as the project's: its settings module, with its app installed.
PROJECT = {"DJANGO_SETTINGS_MODULE": "tests.tasks_app.settings"}
EMPTY = {"high": 0, "medium": 0, "low": 0}


class Rollback(Exception):
    pass


def test_tasks_run_on_real_workers_and_their_results_come_back(start_worker, start_mover):
    start_mover()
    start_worker("tasks", concurrency=2, env=PROJECT)
    run_after = timezone.now() + timedelta(seconds=2)

    results = {
        "sum": add.enqueue(2, 3),
        "declined": charge.enqueue("4242"),
        "context": describe.enqueue(note="from the test"),
        "coroutine": double.enqueue(21),
        "later": started_at.using(run_after=run_after).enqueue("later"),
    }
    wait_until_terminal([result.id for result in results.values()], timeout=30)
    for result in results.values():
        result.refresh()

    total, declined, context, coroutine, later = results.values()
    assert (total.status, total.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    [worker] = total.worker_ids
    assert worker.startswith("tasks@") and total.started_at <= total.finished_at
    # Retried with backoff (the mover queues each retry), then failed: an error per attempt.
    assert declined.status == TaskResultStatus.FAILED and declined.finished_at is not None
    assert declined.attempts == len(declined.errors) == settings.JOB_TASKS_MAX_RETRIES + 1
    assert {error.exception_class_path for error in declined.errors} == {"tests.tasks_app.tasks.Declined"}
    assert "card 4242 declined" in declined.errors[-1].traceback
    assert context.return_value == {"id": context.id, "attempt": 1, "worker": worker, "note": "from the test"}
    assert coroutine.return_value == 42
    assert later.status == TaskResultStatus.SUCCESSFUL
    assert later.started_at >= run_after and datetime.fromisoformat(later.return_value["ran_at"]) >= run_after
    assert later.started_at - run_after < timedelta(seconds=5)


def test_a_task_enqueued_in_a_transaction_runs_after_the_commit_exactly_once(start_worker, broker):
    worker = start_worker("txn", env=PROJECT)

    with pytest.raises(Rollback), transaction.atomic():
        rolled_back = count.enqueue("rolled back")
        time.sleep(1.5)  # the worker is running all along
        assert queue_lengths() == EMPTY
        raise Rollback
    assert not Job.objects.filter(pk=rolled_back.id).exists()
    assert queue_lengths() == EMPTY and redis_count(broker, "rolled back") is None

    with transaction.atomic():
        committed = count.enqueue("committed")
        time.sleep(1.5)
        assert queue_lengths() == EMPTY and redis_count(broker, "committed") is None
        assert committed.id not in worker.output()
    wait_until_terminal([committed.id], timeout=30)
    time.sleep(1)  # time for a second run, if there were one

    committed.refresh()
    assert (committed.status, committed.return_value, committed.attempts) == (TaskResultStatus.SUCCESSFUL, 1, 1)
    assert redis_count(broker, "committed") == "1" and redis_count(broker, "rolled back") is None
    assert rolled_back.id not in worker.output()


def test_a_message_delivered_before_its_job_is_visible_does_not_lose_the_job(start_worker, start_mover, broker):
    """jobqueue publishes after the commit. A job whose only message comes before (a publisher that
    does not wait for the commit, played here by hand) is not lost: the worker finds no row to claim
    and drops the message, and once committed the job is queued without one, which the mover's
    redispatch sweep sends again."""
    worker = start_worker("early", env=PROJECT)
    mover = start_mover(env={"JOB_REDISPATCH_AFTER": "1", "JOB_REDISPATCH_CHECK_SECONDS": "0.5"})

    with transaction.atomic():
        job = build_job(type=TASK_JOB_TYPE, payload={"task": "tests.tasks_app.tasks.count", "args": ["early"]})
        store().insert_jobs([job])
        dispatch.send_jobs([(job.id, job.priority, None, TASK_JOB_TYPE)])
        dropped = f"job {job.id}: no such job"
        wait_for(lambda: dropped in worker.output(), timeout=10, what="the worker to drop the early message")
        wait_for(lambda: delivered_and_acked(broker), timeout=10, what="the early message to be acknowledged")
    wait_until_terminal([job.id], timeout=30)

    result = count.get_result(str(job.id))
    assert (result.status, result.return_value, result.attempts) == (TaskResultStatus.SUCCESSFUL, 1, 1)
    assert redis_count(broker, "early") == "1"
    assert "sent 1 queued jobs again" in mover.output()


def test_a_task_that_exits_fails_its_attempt_and_the_pool_process_lives_on(start_worker):
    """exit() or KeyboardInterrupt in a task is its failure, with its traceback, as in Django's own
    backends: not a pool process killed, a job lost and run again at once."""
    worker = start_worker("exits", env=PROJECT)
    submitted = [
        job_submit(type=TASK_JOB_TYPE, payload={"task": "tests.tasks_app.tasks.exits", "args": [how]}, max_retries=0)
        for how in ("exit", "interrupt")
    ]
    ids = [str(job.pk) for job, _ in submitted]

    wait_until_terminal(ids, timeout=30)

    exited, interrupted = (exits.get_result(job_id) for job_id in ids)
    assert exited.status == interrupted.status == TaskResultStatus.FAILED
    assert [error.exception_class for error in exited.errors] == [SystemExit]
    assert [error.exception_class for error in interrupted.errors] == [KeyboardInterrupt]
    assert "the task exits" in exited.errors[0].traceback and 'sys.exit("' in exited.errors[0].traceback
    assert list(JobAttempt.objects.filter(job_id__in=ids).values_list("outcome", flat=True)) == ["failed", "failed"]
    assert "WorkerLostError" not in worker.output()


def redis_count(client, key: str) -> str | None:
    return client.hget(COUNTS_KEY, key)


def delivered_and_acked(client) -> bool:
    return queue_lengths() == EMPTY and client.hlen(key(UNACKED)) == 0
