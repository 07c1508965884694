import base64
import json

from jobs.models import Job
from tests.api_coverage import covers

NOOP = {"type": "noop", "payload": {}}


def queued_ids(broker) -> list[str]:
    from jobs.adapters.broker import job_id_of

    return [job_id_of(raw) for queue in ("high", "medium", "low") for raw in broker.lrange(queue, 0, -1)]


@covers("POST", "/submit-jobs")
def test_a_bulk_submission_stores_and_publishes_every_job_in_order(client_for, broker):
    client = client_for()
    jobs = [{**NOOP, "priority": ("high", "medium", "low")[i % 3]} for i in range(300)] + [{**NOOP, "delay": 60}]

    response = client.post("/submit-jobs", {"jobs": jobs}, format="json")

    assert response.status_code == 201, response.content
    answered = response.json()["jobs"]
    assert len(answered) == 301 and all(item["created"] for item in answered)
    assert [item["priority"] for item in answered[:3]] == ["high", "medium", "low"]
    assert answered[-1]["status"] == "scheduled"
    assert Job.objects.count() == 301
    assert sorted(queued_ids(broker)) == sorted(item["id"] for item in answered[:300])


def test_one_bad_item_rejects_the_whole_batch_naming_it(client_for, broker):
    client = client_for()
    jobs = [NOOP, {"type": "nope", "payload": {}}, NOOP, {"type": "email_welcome", "payload": {"email": "x"}}]

    response = client.post("/submit-jobs", {"jobs": jobs}, format="json")

    assert response.status_code == 400
    errors = response.json()["jobs"]
    assert errors[0] == {} and errors[2] == {}
    assert "unknown job type" in json.dumps(errors[1]) and "email" in json.dumps(errors[3])
    assert Job.objects.count() == 0 and queued_ids(broker) == []


def test_bulk_limits_and_shape_errors(client_for):
    client = client_for()
    assert client.post("/submit-jobs", {"jobs": []}, format="json").status_code == 400
    assert client.post("/submit-jobs", {"jobs": [NOOP] * 1001}, format="json").status_code == 400
    assert client.post("/submit-jobs", [NOOP], format="json").status_code == 400
    assert "extra" in client.post("/submit-jobs", {"jobs": [NOOP], "extra": 1}, format="json").json()
    assert Job.objects.count() == 0


def test_idempotency_keys_in_a_batch_return_known_jobs(client_for):
    client = client_for()
    first = client.post("/submit-job", {**NOOP, "idempotency_key": "k1"}, format="json").json()
    jobs = [{**NOOP, "idempotency_key": "k1"}, {**NOOP, "idempotency_key": "k2"}, {**NOOP, "idempotency_key": "k2"}]

    answered = client.post("/submit-jobs", {"jobs": jobs}, format="json").json()["jobs"]

    assert answered[0]["id"] == first["id"] and not answered[0]["created"]
    assert answered[1]["created"] and answered[2]["id"] == answered[1]["id"] and not answered[2]["created"]
    assert Job.objects.count() == 2


def test_bulk_messages_are_the_ones_send_task_would_publish(broker):
    # Bulk publishing builds the Redis entries itself; a Celery or kombu upgrade that changes
    # the message format must show up here, not as messages a worker cannot read.
    from jobqueue_site.celery import app
    from jobs.adapters import dispatch

    job_id = "5d3c1a52-0000-4000-8000-000000000001"
    app.send_task(dispatch.RUN_JOB_TASK, args=[job_id], queue="low", soft_time_limit=30, time_limit=35, shadow="noop")
    dispatch.send_jobs([(job_id, "low", 30, "noop")])

    theirs, ours = (json.loads(raw) for raw in broker.lrange("low", 0, -1)[::-1])
    varying = ("correlation_id", "delivery_tag", "reply_to")

    def shape(message):
        body = json.loads(base64.b64decode(message["body"]))
        headers = {k: v for k, v in message["headers"].items() if k not in ("id", "root_id", "origin")}
        properties = {k: v for k, v in message["properties"].items() if k not in varying}
        fixed = {k: v for k, v in message.items() if k not in ("body", "headers", "properties")}
        return body, headers, properties, fixed

    assert shape(ours) == shape(theirs)
    assert set(ours["properties"]) == set(theirs["properties"])
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
