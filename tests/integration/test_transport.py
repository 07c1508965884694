"""The broker transport's bookkeeping of unacknowledged messages, against a real Redis."""

import json
import logging
import time

import pytest
from kombu import Connection

TRANSPORT = "jobs.adapters.transport:Transport"


@pytest.fixture
def queue(redis_server, broker):
    connection = Connection(redis_server.url, transport=TRANSPORT)
    simple = connection.SimpleQueue("transport-test")
    yield simple
    simple.close()
    connection.release()


def deliver(queue, body: str = "hello"):
    queue.put({"body": body})
    return queue.get(block=False)


def recorded(broker, message) -> bool:
    tag = message.delivery_tag
    in_index = broker.zscore("unacked_index", tag) is not None
    in_hash = broker.hexists("unacked", tag)
    assert in_index == in_hash, "the index and the hash disagree"
    return in_hash


def test_a_delivery_is_recorded_without_waiting_and_applied_by_a_flush(queue, broker):
    message = deliver(queue)
    writes = queue.channel.writes

    assert writes.unconfirmed == 1  # sent, its reply not read
    writes.flush()
    assert writes.unconfirmed == 0
    assert recorded(broker, message)
    assert message.payload == {"body": "hello"}


def test_an_ack_removes_the_record(queue, broker):
    message = deliver(queue)
    message.ack()
    queue.channel.writes.flush()

    assert not recorded(broker, message)
    assert broker.llen("transport-test") == 0


def test_replies_are_read_as_later_writes_go_out(queue, broker):
    messages = [deliver(queue, str(n)) for n in range(50)]
    for message in messages:
        message.ack()

    time.sleep(0.3)  # by now every reply to the 100 transactions has arrived

    # The next write first reads every reply that has arrived: only its own stays unconfirmed.
    messages.append(deliver(queue, "one more"))
    assert queue.channel.writes.unconfirmed == 1
    messages[-1].ack()
    queue.channel.writes.flush()
    assert broker.hlen("unacked") == 0 and broker.zcard("unacked_index") == 0


def test_a_requeued_message_goes_back_to_its_queue(queue, broker):
    message = deliver(queue, "again")
    message.requeue()  # restores from the record, which must be applied first

    assert broker.llen("transport-test") == 1
    assert not recorded(broker, message)
    assert queue.get(block=False).payload == {"body": "again"}


def test_closing_the_channel_applies_the_acks_and_restores_the_rest(redis_server, broker):
    connection = Connection(redis_server.url, transport=TRANSPORT)
    simple = connection.SimpleQueue("transport-test")
    for body in ("done", "unfinished"):
        simple.put({"body": body})
    done, _unfinished = simple.get(block=False), simple.get(block=False)
    done.ack()
    simple.close()
    connection.release()

    assert broker.hlen("unacked") == 0
    # The unacked one goes back to its queue (kombu restores at close); the acked one does not.
    assert broker.llen("transport-test") == 1
    with Connection(redis_server.url, transport=TRANSPORT) as again:
        restored = again.SimpleQueue("transport-test").get(block=False)
        assert restored.payload == {"body": "unfinished"}
        restored.ack()


def test_writes_are_sent_again_when_their_connection_breaks(queue, broker, caplog):
    first = deliver(queue, "first")
    queue.channel.writes.flush()
    # Redis drops every other client: the writer's connection dies with its next write unread.
    broker.client_kill_filter(_type="normal", skipme=True)
    first.ack()
    second = deliver(queue, "second")

    with caplog.at_level(logging.WARNING, logger="jobqueue.broker"):
        queue.channel.writes.flush()

    assert not recorded(broker, first)
    assert recorded(broker, second)
    assert "sending" in caplog.text and "again" in caplog.text


def test_a_channel_closed_after_its_connection_was_torn_down_does_not_raise(redis_server, broker):
    """What a worker's consumer meets when Redis went away: kombu has dropped the pools and the
    transport's connection before the channel's close tries to restore its unacked messages."""
    connection = Connection(redis_server.url, transport=TRANSPORT)
    queue = connection.SimpleQueue("transport-test")
    message = deliver(queue)
    channel = queue.channel
    channel.writes.flush()
    channel._disconnect_pools()
    transport, client = channel.connection, channel.connection.client
    transport.client = None

    connection.maybe_close_channel(channel)  # kombu's close: ignores connection errors, nothing else

    assert channel.closed
    assert recorded(broker, message), "the unacked message stays recorded in Redis for a later restore"
    transport.client = client
    connection.release()


PREFIX = "tenant-a:"
PREFIXED = {"global_keyprefix": PREFIX}


@pytest.fixture
def prefixed():
    from django.conf import settings
    from django.test import override_settings

    with override_settings(CELERY_BROKER_TRANSPORT_OPTIONS={**settings.CELERY_BROKER_TRANSPORT_OPTIONS, **PREFIXED}):
        yield


def test_with_a_key_prefix_the_transport_and_the_broker_view_read_the_same_keys(redis_server, broker, prefixed):
    """kombu's consumer, our pipelined bookkeeping and jobs.adapters.broker agree on every key."""
    from jobs.adapters import broker as broker_view

    connection = Connection(redis_server.url, transport=TRANSPORT, transport_options=PREFIXED)
    high = connection.SimpleQueue("high")
    try:
        high.put([["job-1"], {}, {}])  # a task message's body: its args first
        assert broker.llen(f"{PREFIX}high") == 1 and broker.llen("high") == 0
        assert broker_view.queue_lengths()["high"] == 1

        message = high.get(block=False)
        high.channel.writes.flush()
        assert broker.hexists(f"{PREFIX}unacked", message.delivery_tag)
        assert not broker.exists("unacked")
        assert broker_view.in_flight_job_ids(delivered_after=0) == {"job-1"}
        message.ack()
        high.channel.writes.flush()
        assert not broker.hexists(f"{PREFIX}unacked", message.delivery_tag)
    finally:
        high.close()
        connection.release()


def test_a_dead_letter_copy_is_dropped_by_its_job_id_under_the_prefix(broker, prefixed):
    from jobs.adapters import broker as broker_view

    messages = {job_id: json.dumps({"body": json.dumps([[job_id], {}, {}])}) for job_id in ("j1", "j2", "j3")}
    for job_id, message in messages.items():
        broker_view.park_dead_letter(job_id, message)

    assert broker.llen(f"{PREFIX}dead_letter") == 3 and not broker.exists("dead_letter")
    assert sorted(broker_view.dead_letter_job_ids()) == ["j1", "j2", "j3"]
    assert broker_view.forget_dead_letters(["j2", "unknown"]) == 1
    assert sorted(broker_view.dead_letter_job_ids()) == ["j1", "j3"]
    assert broker.hkeys(f"{PREFIX}dead_letter_index") and broker_view.dead_letter_length() == 2
    assert broker_view.forget_dead_letters(["j1", "j3"]) == 2
    assert broker_view.dead_letter_length() == 0 and not broker.exists(f"{PREFIX}dead_letter_index")


def test_the_celery_apps_redis_url_keeps_its_scheme_and_gets_this_transport(redis_server):
    # Flower picks its Broker tab's client by the URL's scheme; the workers must still use ours.
    from jobqueue_site.celery import app
    from jobs.adapters.transport import Transport

    with app.connection_for_write() as connection:
        assert type(connection.transport) is Transport
        assert connection.as_uri().startswith("redis://")
