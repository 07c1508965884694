"""The private library APIs jobqueue uses (jobs/adapters/internals.py and the kombu transport) still exist
with the shape it relies on: an upgrade of kombu, Celery, redis-py, psycopg, Django or
prometheus_client that changes one fails here, by name, rather than somewhere in a worker."""

import dataclasses
import inspect
import time
from contextlib import nullcontext
from types import SimpleNamespace

import psycopg
import pytest
from celery.worker import control as celery_control
from celery.worker.request import Request
from kombu.transport import redis as kombu_redis
from kombu.transport import resolve_transport
from prometheus_client import CollectorRegistry, Counter, values
from redis.connection import Connection

from jobs.adapters import internals
from jobs.models import Job, JobAttempt


def test_kombus_redis_channel_still_routes_and_creates_clients_as_we_rely_on():
    augment = kombu_redis.Channel._inplace_augment_message
    assert list(inspect.signature(augment).parameters) == ["self", "message", "exchange", "routing_key"]
    assert "asynchronous" in inspect.signature(kombu_redis.Channel._create_client).parameters
    assert hasattr(kombu_redis.Channel, "_pool")

    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)  # no connection: the method needs none
    envelope = {"body": "{}", "properties": {"delivery_info": {}}}
    internals.kombu_route(channel, envelope, "high")
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "high"}
    assert envelope["properties"]["body_encoding"] == "base64" and envelope["properties"]["delivery_tag"]


def test_a_queryset_marked_fetched_and_empty_never_asks_the_database():
    # The unit tests have no database: a query would fail here.
    history = JobAttempt.objects.all()
    internals.mark_fetched_empty(history)
    assert list(history) == [] and history.count() == 0


def test_a_model_instance_can_be_marked_saved():
    job = Job(type="noop")
    assert job._state.adding and job._state.db is None
    internals.mark_saved(job, "default")
    assert (job._state.adding, job._state.db) == (False, "default")


def test_metrics_tell_which_of_them_hold_values_and_values_can_move_to_files():
    counter = Counter("internals_probe_total", "probe", ["kind"], registry=CollectorRegistry())
    assert internals.names_with_values([counter]) == []
    counter.labels("a").inc()
    assert internals.names_with_values([counter]) == ["internals_probe"]
    assert callable(values.MultiProcessValue) and hasattr(values, "ValueClass")


def test_a_task_result_takes_its_return_value_as_djangos_backends_give_it():
    from jobs.adapters.task_api import Task, TaskResult, TaskResultStatus

    assert "_return_value" in {field.name for field in dataclasses.fields(TaskResult)}
    task = Task.__new__(Task)  # no backend to validate against: only the result is under test
    fields = dict.fromkeys(("enqueued_at", "started_at", "finished_at", "last_attempted_at"))
    result = TaskResult(
        task=task, id="1", status=TaskResultStatus.SUCCESSFUL, args=[], kwargs={}, backend="default",
        errors=[], worker_ids=[], **fields,
    )  # fmt: skip
    internals.set_return_value(result, {"total": 5})
    assert result.return_value == {"total": 5}


def test_a_relation_given_as_prefetched_is_read_without_a_query():
    job, history = Job(type="noop"), JobAttempt.objects.none()
    internals.mark_fetched_empty(history)

    internals.set_prefetched(job, "history", history)

    assert list(job.history.all()) == []  # the unit tests have no database: a query would fail


def test_kombu_builds_a_registered_transport_for_a_scheme():
    import jobqueue_site.celery  # noqa: F401  (registers ours for redis:// and rediss://)
    from jobs.adapters.transport import Transport

    assert resolve_transport("redis") is Transport and resolve_transport("rediss") is Transport
    internals.register_kombu_transport("kombu.transport.memory:Transport", "jobqueue-probe")
    try:
        assert resolve_transport("jobqueue-probe").__module__ == "kombu.transport.memory"
    finally:
        internals.TRANSPORT_ALIASES.pop("jobqueue-probe")


def test_a_failed_tasks_event_carries_its_runtime_through_celerys_send_event():
    assert list(inspect.signature(Request.send_event).parameters) == ["self", "type", "fields"]
    assert Request.time_start is None  # set when the pool accepts the task
    sent = []
    request = internals.RequestWithFailedRuntime.__new__(internals.RequestWithFailedRuntime)
    request.id, request.time_start, request._task = "t1", time.time() - 2, SimpleNamespace(send_events=True)
    request.eventer = SimpleNamespace(enabled=True, send=lambda type, **fields: sent.append((type, fields)))

    request.send_event("task-failed", exception="boom")
    request.send_event("task-succeeded", runtime=0.5)

    assert [type for type, _ in sent] == ["task-failed", "task-succeeded"]
    assert 2 <= sent[0][1]["runtime"] < 60 and sent[0][1]["uuid"] == "t1" and sent[1][1]["runtime"] == 0.5


def test_the_workers_conf_command_is_ours_under_celerys_names():
    import tasks.control  # noqa: F401  (replaces the command on import)
    from jobqueue_site.celery import app

    assert list(inspect.signature(celery_control.conf).parameters) == ["state", "with_defaults", "kwargs"]
    ours = celery_control.Panel.data["conf"]
    assert ours.__module__ == "jobs.adapters.internals" and celery_control.Panel.data["dump_conf"] is ours
    assert celery_control.Panel.meta["conf"].type == "inspect"

    answer = ours(SimpleNamespace(app=app), with_defaults=False)

    assert "CELERY_BROKER_URL" in answer and not [key for key in answer if key.startswith("__")]


def test_redis_py_packs_a_transaction_and_sends_it_without_reading_a_reply():
    assert "check_health" in inspect.signature(Connection.send_packed_command).parameters
    # ... and the replies are read later by the kombu transport (jobs/adapters/transport.py)
    assert "timeout" in inspect.signature(Connection.can_read).parameters and callable(Connection.read_response)
    connection = Connection(host="127.0.0.1", port=1)  # never connected: packing needs no server
    packed = internals.redis_pack_transaction(connection, [("SET", "k", "v")])
    assert b"".join(packed) == b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nEXEC\r\n"
    sent = []
    internals.redis_send_packed(SimpleNamespace(send_packed_command=lambda p, check_health: sent.append(p)), packed)
    assert sent == [packed]


def test_psycopg_prepares_statements_that_ask_once_django_has_turned_preparing_off():
    threshold = psycopg.Connection.prepare_threshold
    assert isinstance(threshold, property) and threshold.fset is not None
    assert "prepare" in inspect.signature(psycopg.Cursor.execute).parameters
    raw = SimpleNamespace(prepare_threshold=None)
    internals.allow_prepared_statements(raw, 2**31 - 1)
    assert raw.prepare_threshold == 2**31 - 1
    raw.prepare_threshold = 5  # one set by hand stays
    internals.allow_prepared_statements(raw, 2**31 - 1)
    assert raw.prepare_threshold == 5


class RecordingConnection:
    """What pipelined_transaction uses of a psycopg connection, recording the statements sent."""

    def __init__(self, *, autocommit: bool, fail: bool = False):
        self.autocommit, self.fail, self.sent = autocommit, fail, []
        self.info = SimpleNamespace(transaction_status=psycopg.pq.TransactionStatus.IDLE)

    def pipeline(self):
        connection = self

        class Pipeline:
            def __enter__(self):
                connection.sent.append("pipeline")

            def __exit__(self, *exc):
                connection.sent.append("sync")
                if connection.fail:
                    connection.info.transaction_status = psycopg.pq.TransactionStatus.INERROR
                    raise psycopg.errors.LockNotAvailable("lock")

        return Pipeline()

    def rollback(self):
        self.sent.append("rollback")


@pytest.mark.parametrize(
    "autocommit, fail, sent",
    [
        (True, False, ["pipeline", "BEGIN", "claim", "COMMIT", "sync"]),
        (False, False, ["pipeline", "claim", "sync"]),  # inside Django's atomic block: its transaction
        (True, True, ["pipeline", "BEGIN", "claim", "COMMIT", "sync", "rollback"]),
    ],
)
def test_a_pipelined_transaction_of_our_own_only_outside_djangos(autocommit, fail, sent):
    assert {"pipeline", "autocommit", "rollback", "info"} <= set(dir(psycopg.Connection))
    connection = RecordingConnection(autocommit=autocommit, fail=fail)
    cursor = SimpleNamespace(connection=connection, execute=connection.sent.append)

    with pytest.raises(psycopg.Error) if fail else nullcontext(), internals.pipelined_transaction(cursor):
        cursor.execute("claim")

    assert connection.sent == sent
