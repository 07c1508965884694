"""Pausing a queue: nothing of it is published or claimed until it is resumed."""

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from jobs import services
from jobs.adapters import dispatch
from jobs.models import Job, QueueState
from jobs.rules.exceptions import UnknownQueue


def submit(**overrides) -> Job:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def message_ids(broker, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["argsrepr"][2:-2] for raw in broker.lrange(queue, 0, -1)]


def test_pausing_removes_the_waiting_messages_but_keeps_the_jobs_queued(broker):
    waiting = [submit(priority="low") for _ in range(3)]
    other = submit(priority="high")

    state = services.queue_pause(queue="low", by="test")

    assert state.paused and state.changed_by == "test"
    assert broker.llen("low") == 0
    assert message_ids(broker, "high") == [str(other.id)]
    assert set(Job.objects.filter(pk__in=[j.id for j in waiting]).values_list("status", flat=True)) == {"queued"}


def test_a_paused_queue_gets_no_new_messages(broker):
    services.queue_pause(queue="medium")

    job = submit()

    assert broker.llen("medium") == 0
    assert Job.objects.get(pk=job.id).status == "queued"
    assert dispatch.send_jobs([(job.id, "medium", None, job.type)]) == 0


def test_the_claim_refuses_a_job_whose_queue_is_paused(broker):
    job = submit()
    services.queue_pause(queue="medium")

    assert services.job_claim(job_id=job.id, worker="w1") is None
    assert Job.objects.get(pk=job.id).status == "queued"

    services.queue_resume(queue="medium")
    assert services.job_claim(job_id=job.id, worker="w1") is not None


@override_settings(JOB_PAUSE_CACHE_SECONDS=3600)
def test_a_stale_cache_cannot_let_a_paused_queue_run(broker):
    dispatch.forget_paused_queues()
    assert dispatch.paused_queues() == frozenset()  # cached: nothing paused, for an hour
    QueueState.objects.create(name="medium", paused=True)  # paused by another process

    job = submit()  # this process still believes medium runs, so the message goes out

    assert message_ids(broker, "medium") == [str(job.id)]
    assert services.job_claim(job_id=job.id, worker="w1") is None


@override_settings(JOB_PAUSE_CACHE_SECONDS=3600)
def test_a_stale_cache_cannot_hold_back_a_resumed_queue(broker):
    QueueState.objects.create(name="medium", paused=True)
    assert dispatch.paused_queues(fresh=True) == {"medium"}  # cached as paused for an hour
    QueueState.objects.filter(name="medium").update(paused=False)  # resumed by another process

    job = submit()

    assert message_ids(broker, "medium") == [str(job.id)]


def test_resuming_publishes_the_queued_jobs_oldest_first(broker):
    services.queue_pause(queue="low")
    jobs = [submit(priority="low") for _ in range(4)]
    services.job_cancel(job_id=jobs[1].id)

    state, published = services.queue_resume(queue="low", by="test")

    assert not state.paused and published == 3
    # Celery's Redis transport LPUSHes and workers BRPOP: the list's tail is the next message.
    assert message_ids(broker, "low")[::-1] == [str(jobs[i].id) for i in (0, 2, 3)]


def test_resuming_a_running_queue_publishes_nothing_again(broker):
    submit()

    _, published = services.queue_resume(queue="medium")

    assert published == 0 and broker.llen("medium") == 1


def test_due_jobs_of_a_paused_queue_are_queued_but_not_published(broker):
    services.queue_pause(queue="high")
    job = submit(priority="high", delay=60)
    Job.objects.filter(pk=job.id).update(run_at=timezone.now() - timedelta(seconds=1))

    assert services.jobs_release_due() == 1

    assert Job.objects.get(pk=job.id).status == "queued"
    assert broker.llen("high") == 0


@override_settings(JOB_REDISPATCH_AFTER=0)
def test_the_redispatch_sweep_skips_paused_queues(broker):
    services.queue_pause(queue="medium")
    paused_job = submit()
    running_queue_job = submit(priority="low")
    broker.delete("low")  # as if Redis lost it

    assert services.jobs_redispatch_missing() == 1

    assert message_ids(broker, "low") == [str(running_queue_job.id)]
    assert broker.llen("medium") == 0
    assert Job.objects.get(pk=paused_job.id).status == "queued"


def test_an_unknown_queue_is_refused():
    with pytest.raises(UnknownQueue, match="no queue named 'urgent'"):
        services.queue_pause(queue="urgent")
    with pytest.raises(UnknownQueue):
        services.queue_resume(queue="dead_letter")
