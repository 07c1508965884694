"""The mover sends again the messages the broker lost, whatever the length of the queues."""

from django.test import override_settings

from jobs import services
from jobs.adapters import broker as broker_view
from jobs.models import Job
from jobs.services import recovery


def submit(**overrides) -> str:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, "priority": "low", **overrides})
    return str(job.id)


def message_ids(broker, queue: str) -> list[str]:
    """Job ids of the queue's messages, the next one a worker takes first."""
    return [broker_view.job_id_of(raw) for raw in reversed(broker.lrange(queue, 0, -1))]


def test_jobs_queued_before_redis_restarted_empty_are_sent_again_while_new_ones_keep_coming(redis_server, broker, db):
    services.jobs_redispatch_missing()  # the mover saw Redis holding its data
    before = [submit() for _ in range(20)]

    redis_server.restart_empty()
    after = [submit() for _ in range(5)]  # the queue is not empty: new submissions keep coming
    sent = services.jobs_redispatch_missing()

    waiting = message_ids(broker, "low")
    assert sent >= len(before)
    # Every job queued before the restart has its message again, in front of the newer ones and
    # in the order they were queued.
    assert waiting[: len(before)] == before
    assert set(after) <= set(waiting)
    assert Job.objects.filter(status="queued").count() == len(before) + len(after)


@override_settings(JOB_REDISPATCH_AFTER=0)
def test_a_message_lost_deep_in_a_backlog_is_sent_again_to_the_front_once(broker, db):
    services.jobs_redispatch_missing()  # the mover saw Redis holding its data
    backlog = [submit() for _ in range(50)]
    lost = backlog[20]
    [raw] = [raw for raw in broker.lrange("low", 0, -1) if broker_view.job_id_of(raw) == lost]
    broker.lrem("low", 1, raw)

    assert services.jobs_redispatch_missing() == 1

    waiting = message_ids(broker, "low")
    assert waiting[0] == lost
    assert sorted(waiting) == sorted(backlog)  # every other job still has one message, not two


@override_settings(JOB_REDISPATCH_AFTER=0)
def test_each_check_goes_on_where_the_last_stopped_so_every_queued_job_is_looked_at(broker, db, monkeypatch):
    monkeypatch.setattr(recovery, "COMPARE_BATCH", 5)
    monkeypatch.setattr(recovery, "COMPARE_SHARE", 1.0)  # no pause between checks
    monkeypatch.setattr(recovery, "_compare_after", {})
    services.jobs_redispatch_missing()  # the mover saw Redis holding its data
    backlog = [submit() for _ in range(12)]
    lost = backlog[-1]  # the newest: the last of three checks of five looks at it
    [raw] = [raw for raw in broker.lrange("low", 0, -1) if broker_view.job_id_of(raw) == lost]
    broker.lrem("low", 1, raw)

    sent = [services.jobs_redispatch_missing() for _ in range(3)]

    assert sent == [0, 0, 1]
    assert message_ids(broker, "low")[0] == lost
