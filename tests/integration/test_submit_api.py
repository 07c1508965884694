import json
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from tests.api_coverage import covers

WELCOME = {"type": "email_welcome", "payload": {"email": "new@example.com"}}


def queued_messages(broker, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]


@covers("POST", "/submit-job")
def test_submit_stores_the_job_and_puts_its_id_on_the_priority_queue(client_for, broker):
    client = client_for()

    response = client.post("/submit-job", {**WELCOME, "priority": "high"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["priority"] == "high"
    assert body["attempts"] == 0 and body["retries"] == 0 and body["max_retries"] == 3
    assert body["history"] == [] and body["error"] is None
    [message] = queued_messages(broker, "high")
    assert message["headers"]["task"] == "jobqueue.run_job"
    assert message["headers"]["shadow"] == WELCOME["type"]  # the name the worker reports (Flower)
    assert message["headers"]["argsrepr"] == f"['{body['id']}']"
    assert broker.llen("medium") == 0 and broker.llen("low") == 0


@covers("GET", "/job-status/{job_id}")
def test_status_returns_every_documented_field(client_for):
    client = client_for()
    job_id = client.post("/submit-job", WELCOME, format="json").json()["id"]

    body = client.get(f"/job-status/{job_id}").json()

    expected = {
        "id",
        "type",
        "status",
        "priority",
        "payload",
        "attempts",
        "retries",
        "max_retries",
        "result",
        "error",
        "progress",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "history",
    }
    assert expected <= set(body)
    assert body["created_at"].endswith("Z")
    assert body["payload"] == {"email": "new@example.com"}


def test_another_owners_job_is_not_found(client_for):
    alice, bob = client_for("alice"), client_for("bob")
    job_id = alice.post("/submit-job", WELCOME, format="json").json()["id"]

    assert bob.get(f"/job-status/{job_id}").status_code == 404
    assert alice.get(f"/job-status/{job_id}").status_code == 200
    assert client_for("ops", staff=True).get(f"/job-status/{job_id}").status_code == 200


def test_unknown_and_malformed_ids_are_not_found(client_for):
    client = client_for()
    assert client.get("/job-status/00000000-0000-0000-0000-000000000000").status_code == 404
    response = client.get("/job-status/not-a-uuid")
    assert response.status_code == 404
    assert "not-a-uuid" in response.json()["detail"]


def test_requests_without_a_token_are_refused(client_for, db):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    assert anonymous.post("/submit-job", WELCOME, format="json").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad.post("/submit-job", WELCOME, format="json").status_code == 401
    assert Job.objects.count() == 0


@pytest.mark.postgres_only  # the prepared statement
def test_a_token_is_checked_on_every_request_against_its_user(make_user, broker):
    """Read by one prepared statement on PostgreSQL, never cached: a deactivated user or a
    deleted token is refused on the very next request."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from jobs.adapters.store import store

    user, key = make_user("holder", staff=True)
    found = store().token_owner(key)
    assert (found.key, found.user.pk, found.user.username, found.user.is_staff) == (key, user.pk, "holder", True)
    assert found.created == Token.objects.get(key=key).created
    assert store().token_owner("no-such-token") is None

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post("/submit-job", WELCOME, format="json").status_code == 201
    user.is_active = False
    user.save()
    refused = client.post("/submit-job", WELCOME, format="json")
    assert (refused.status_code, refused.json()["detail"]) == (401, "User inactive or deleted.")
    user.is_active = True
    user.save()
    assert client.post("/submit-job", WELCOME, format="json").status_code == 201
    Token.objects.filter(key=key).delete()
    refused = client.post("/submit-job", WELCOME, format="json")
    assert (refused.status_code, refused.json()["detail"]) == (401, "Invalid token.")
    assert Job.objects.count() == 2


def test_a_repeated_idempotency_key_returns_the_existing_job(client_for, broker):
    client = client_for()
    first = client.post("/submit-job", {**WELCOME, "idempotency_key": "signup-42"}, format="json")
    again = client.post("/submit-job", WELCOME, format="json", HTTP_IDEMPOTENCY_KEY="signup-42")

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1
    assert broker.llen("medium") == 1


def test_idempotency_keys_are_per_owner(client_for):
    a = client_for("a").post("/submit-job", {**WELCOME, "idempotency_key": "k"}, format="json")
    b = client_for("b").post("/submit-job", {**WELCOME, "idempotency_key": "k"}, format="json")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


def test_a_delayed_job_is_stored_scheduled_and_not_sent_to_the_broker(client_for, broker):
    client = client_for()
    before = timezone.now()

    body = client.post("/submit-job", {**WELCOME, "delay": 30}, format="json").json()

    assert body["status"] == "scheduled"
    run_at = Job.objects.get(pk=body["id"]).run_at
    assert before + timedelta(seconds=29) < run_at < before + timedelta(seconds=32)
    assert sum(broker.llen(q) for q in ("high", "medium", "low")) == 0


def test_run_at_in_the_future_schedules_and_in_the_past_queues(client_for, broker):
    client = client_for()
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    past = (timezone.now() - timedelta(hours=1)).isoformat()

    assert client.post("/submit-job", {**WELCOME, "run_at": future}, format="json").json()["status"] == "scheduled"
    assert client.post("/submit-job", {**WELCOME, "run_at": past}, format="json").json()["status"] == "queued"
    assert broker.llen("medium") == 1


def test_per_job_max_retries_overrides_the_type_default(client_for):
    body = client_for().post("/submit-job", {**WELCOME, "max_retries": 7}, format="json").json()
    assert body["max_retries"] == 7


def test_healthz_reports_database_and_broker(db):
    from django.test import Client

    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "dispatch": "ok"}
