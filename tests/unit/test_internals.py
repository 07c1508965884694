"""The private library APIs jobqueue uses (jobs/internals.py and the kombu transport) still exist
with the shape it relies on: an upgrade of kombu, Django or prometheus_client that changes one
fails here, by name, rather than somewhere in a worker."""

import dataclasses
import inspect

from kombu.transport import redis as kombu_redis
from prometheus_client import CollectorRegistry, Counter, values

from jobs import internals
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
    from jobs.task_api import Task, TaskResult, TaskResultStatus

    assert "_return_value" in {field.name for field in dataclasses.fields(TaskResult)}
    task = Task.__new__(Task)  # no backend to validate against: only the result is under test
    fields = dict.fromkeys(("enqueued_at", "started_at", "finished_at", "last_attempted_at"))
    result = TaskResult(
        task=task, id="1", status=TaskResultStatus.SUCCESSFUL, args=[], kwargs={}, backend="default",
        errors=[], worker_ids=[], **fields,
    )  # fmt: skip
    internals.set_return_value(result, {"total": 5})
    assert result.return_value == {"total": 5}
