"""The staff-only management API under /api/ against real PostgreSQL and Redis."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job, QueueState
from tests.api_coverage import covers

MISSING = "00000000-0000-4000-8000-000000000000"
# Every management operation with a concrete URL, for the permission checks.
OPERATIONS = [
    ("get", "/api/jobs/"),
    ("get", f"/api/jobs/{MISSING}/"),
    ("delete", f"/api/jobs/{MISSING}/"),
    ("post", f"/api/jobs/{MISSING}/retry/"),
    ("post", f"/api/jobs/{MISSING}/resubmit/"),
    ("post", f"/api/jobs/{MISSING}/cancel/"),
    ("get", "/api/dead-letter/"),
    ("post", "/api/dead-letter/retry-all/"),
    ("post", "/api/dead-letter/purge/"),
    ("get", "/api/queues/"),
    ("post", "/api/queues/low/pause/"),
    ("post", "/api/queues/low/resume/"),
    ("get", "/api/stats/"),
]


def submit(**overrides) -> Job:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def dead(job_type: str = "test.fail", payload: dict | None = None, message: str = "boom") -> Job:
    """A job that ran once and died: claimed, failed permanently."""
    job = submit(type=job_type, payload={"fail": True} if payload is None else payload, max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="RuntimeError", message=message)
    job.refresh_from_db()
    assert job.status == "dead"
    return job


@pytest.fixture
def staff(client_for):
    return client_for("operator", staff=True)


@pytest.mark.parametrize(("method", "url"), OPERATIONS)
def test_anonymous_clients_get_401_asking_for_a_token(method, url):
    response = getattr(APIClient(), method)(url)

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert "credentials" in response.json()["detail"]


@pytest.mark.parametrize(("method", "url"), OPERATIONS)
def test_non_staff_clients_get_403(client_for, method, url):
    client = client_for("someone")
    submit(owner=client.user)

    response = getattr(client, method)(url)

    assert response.status_code == 403, response.content
    assert "permission" in response.json()["detail"]
    assert not QueueState.objects.exists()


@covers("GET", "/api/jobs/")
def test_jobs_are_listed_newest_first_with_filters(staff, client_for):
    owner = client_for("ann").user
    old = submit(type="test.sleep", priority="low", owner=owner)
    Job.objects.filter(pk=old.id).update(created_at=timezone.now() - timedelta(days=2))
    fresh = submit(payload={"customer": "ACME-42"})
    broken = dead(message="SMTP server said no")

    everything = staff.get("/api/jobs/").json()
    assert everything["count"] == 3
    assert [row["id"] for row in everything["results"]] == [str(broken.id), str(fresh.id), str(old.id)]
    assert everything["results"][2]["owner"] == "ann"
    assert everything["results"][0]["error"] == {"type": "RuntimeError", "message": "SMTP server said no"}

    def ids(**query) -> list[str]:
        response = staff.get("/api/jobs/", query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(status="dead") == [str(broken.id)]
    assert ids(type="test.sleep") == ids(priority="low") == [str(old.id)]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert set(ids(created_after=since)) == {str(fresh.id), str(broken.id)}
    assert ids(created_before=since) == [str(old.id)]
    assert ids(search="acme-42") == [str(fresh.id)]  # payload content
    assert ids(search="smtp server") == [str(broken.id)]  # error text
    assert ids(search=str(old.id)[:13]) == [str(old.id)]  # id
    assert ids(status="dead", type="noop") == []


@covers("GET", "/api/jobs/")
def test_the_job_list_is_paginated_with_a_maximum_page_size(staff):
    for _ in range(7):
        submit()

    first = staff.get("/api/jobs/", {"page_size": 3}).json()
    last = staff.get("/api/jobs/", {"page_size": 3, "page": 3}).json()
    huge = staff.get("/api/jobs/", {"page_size": 10_000}).json()

    assert (first["count"], len(first["results"]), first["previous"]) == (7, 3, None)
    assert "page=2" in first["next"]
    assert (len(last["results"]), last["next"]) == (1, None)
    assert len(huge["results"]) == 7
    assert staff.get("/api/jobs/", {"page": 99}).status_code == 404


@covers("GET", "/api/jobs/")
def test_bad_job_filters_are_answered_with_400_naming_them(staff):
    response = staff.get("/api/jobs/", {"status": "sleeping", "created_after": "yesterday", "colour": "red"})

    assert response.status_code == 400
    assert set(response.json()) == {"colour"}
    response = staff.get("/api/jobs/", {"status": "sleeping", "created_after": "yesterday"})
    assert set(response.json()) == {"status", "created_after"}


@covers("GET", "/api/jobs/{job_id}/")
def test_a_job_is_shown_with_payload_error_traceback_and_history(staff):
    job = dead(payload={"fail": True, "to": "x@example.com"})

    body = staff.get(f"/api/jobs/{job.id}/").json()

    assert body["id"] == str(job.id) and body["status"] == "dead"
    assert body["payload"] == {"fail": True, "to": "x@example.com"}
    assert body["error"]["type"] == "RuntimeError" and body["reason"]
    assert [attempt["outcome"] for attempt in body["history"]] == ["failed"]
    assert {"owner", "worker", "updated_at", "resubmitted_from"} <= set(body)


@covers("GET", "/api/jobs/{job_id}/")
def test_an_unknown_or_malformed_job_id_is_a_404_json_answer(staff):
    for job_id in (MISSING, "not-a-uuid"):
        for method, suffix in (
            ("get", ""),
            ("delete", ""),
            ("post", "retry/"),
            ("post", "resubmit/"),
            ("post", "cancel/"),
        ):
            response = getattr(staff, method)(f"/api/jobs/{job_id}/{suffix}")
            assert response.status_code == 404, (method, suffix, response.content)
            assert response.json() == {"detail": f"no job with id {job_id}"}


@covers("DELETE", "/api/jobs/{job_id}/")
def test_deleting_a_job_removes_it_but_a_running_job_is_refused(staff, broker):
    gone = dead()
    running = submit()
    services.job_claim(job_id=running.id, worker="w1")

    assert staff.delete(f"/api/jobs/{gone.id}/").status_code == 204
    refused = staff.delete(f"/api/jobs/{running.id}/")

    assert not Job.objects.filter(pk=gone.id).exists()
    assert broker.llen("dead_letter") == 0
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    assert staff.delete(f"/api/jobs/{gone.id}/").status_code == 404


@covers("POST", "/api/jobs/{job_id}/retry/")
def test_retrying_a_dead_job_requeues_it_under_the_same_id(staff, broker):
    job = dead()
    broker.delete("medium")

    response = staff.post(f"/api/jobs/{job.id}/retry/", format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["attempts"]) == (str(job.id), "queued", 0)
    assert broker.llen("medium") == 1 and broker.llen("dead_letter") == 0


@covers("POST", "/api/jobs/{job_id}/retry/")
def test_retrying_with_a_corrected_payload_validates_and_stores_it(staff):
    job = dead(job_type="email_welcome", payload={"email": "a@example.com"})

    invalid = staff.post(f"/api/jobs/{job.id}/retry/", {"payload": {"email": "nope"}}, format="json")
    not_object = staff.post(f"/api/jobs/{job.id}/retry/", {"payload": [1]}, format="json")
    unknown = staff.post(f"/api/jobs/{job.id}/retry/", {"payload": {}, "colour": 1}, format="json")
    fixed = staff.post(f"/api/jobs/{job.id}/retry/", {"payload": {"email": "b@example.com"}}, format="json")

    assert invalid.status_code == 400 and "email" in invalid.json()["payload"]
    assert not_object.status_code == 400 and "payload" in not_object.json()
    assert unknown.status_code == 400 and "colour" in unknown.json()
    assert fixed.status_code == 200 and fixed.json()["payload"] == {"email": "b@example.com"}


@covers("POST", "/api/jobs/{job_id}/retry/")
def test_only_dead_jobs_can_be_retried(staff):
    job = submit()

    response = staff.post(f"/api/jobs/{job.id}/retry/")

    assert response.status_code == 409
    assert "only dead jobs" in response.json()["detail"]
    assert staff.post(f"/api/jobs/{MISSING}/retry/").status_code == 404


@covers("POST", "/api/jobs/{job_id}/resubmit/")
def test_resubmitting_creates_a_new_linked_job(staff, broker):
    job = dead()

    response = staff.post(f"/api/jobs/{job.id}/resubmit/", {"payload": {"fail": False}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != str(job.id) and body["status"] == "queued"
    assert (body["resubmitted_from"], body["payload"]) == (str(job.id), {"fail": False})
    assert Job.objects.get(pk=job.id).status == "dead"
    assert staff.post(f"/api/jobs/{MISSING}/resubmit/").status_code == 404


@covers("POST", "/api/jobs/{job_id}/cancel/")
def test_cancelling_a_waiting_job_and_refusing_a_finished_one(staff):
    waiting = submit(delay=600)
    finished = dead()

    cancelled = staff.post(f"/api/jobs/{waiting.id}/cancel/")
    refused = staff.post(f"/api/jobs/{finished.id}/cancel/")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert refused.status_code == 409 and "dead" in refused.json()["detail"]


@covers("GET", "/api/dead-letter/")
def test_the_dead_letter_list_shows_only_dead_jobs_with_their_reason(staff):
    first = dead(message="first")
    second = dead(job_type="test.permanent", payload={}, message="second")
    submit()

    body = staff.get("/api/dead-letter/").json()
    only_permanent = staff.get("/api/dead-letter/", {"type": "test.permanent"}).json()

    assert [row["id"] for row in body["results"]] == [str(second.id), str(first.id)]
    assert all(row["status"] == "dead" and "retries exhausted" in row["reason"] for row in body["results"])
    assert [row["id"] for row in only_permanent["results"]] == [str(second.id)]
    assert staff.get("/api/dead-letter/", {"status": "queued"}).status_code == 400


@covers("POST", "/api/dead-letter/retry-all/")
def test_retry_all_requeues_every_dead_job(staff, broker):
    jobs = [dead() for _ in range(3)]

    response = staff.post("/api/dead-letter/retry-all/")

    assert response.status_code == 200 and response.json() == {"retried": 3}
    assert set(Job.objects.filter(pk__in=[j.id for j in jobs]).values_list("status", flat=True)) == {"queued"}
    assert broker.llen("dead_letter") == 0


@covers("POST", "/api/dead-letter/purge/")
def test_purge_deletes_dead_jobs_optionally_only_old_ones(staff, broker):
    old, recent = dead(), dead()
    Job.objects.filter(pk=old.id).update(finished_at=timezone.now() - timedelta(days=10))
    kept = submit()

    assert staff.post("/api/dead-letter/purge/", {"older_than_days": -1}, format="json").status_code == 400
    assert staff.post("/api/dead-letter/purge/", {"older_than_days": 7}, format="json").json() == {"purged": 1}
    assert list(Job.objects.values_list("pk", flat=True).order_by("created_at")) == [recent.id, kept.id]
    assert staff.post("/api/dead-letter/purge/", format="json").json() == {"purged": 1}
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.id]
    assert broker.llen("dead_letter") == 0


@covers("GET", "/api/queues/")
def test_queues_show_depth_queued_running_latency_and_pause_state(staff):
    submit(priority="high")
    waiting = submit(priority="high")
    Job.objects.filter(pk=waiting.id).update(updated_at=timezone.now() - timedelta(seconds=90))
    services.job_claim(job_id=submit(priority="low").id, worker="w1")

    body = staff.get("/api/queues/").json()

    queues = {queue["name"]: queue for queue in body}
    assert list(queues) == ["high", "medium", "low"]
    assert (queues["high"]["depth"], queues["high"]["queued"], queues["high"]["running"]) == (2, 2, 0)
    assert 90 <= queues["high"]["latency_seconds"] < 120
    assert (queues["low"]["queued"], queues["low"]["running"], queues["low"]["latency_seconds"]) == (0, 1, 0)
    assert not any(queue["paused"] for queue in body)


@covers("POST", "/api/queues/{name}/pause/")
def test_pausing_a_queue_over_the_api(staff, broker):
    job = submit(priority="low")

    response = staff.post("/api/queues/low/pause/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["paused"], body["changed_by"]) == ("low", True, "api:operator")
    assert (body["depth"], body["queued"]) == (0, 1)
    assert Job.objects.get(pk=job.id).status == "queued"
    assert services.job_claim(job_id=job.id, worker="w1") is None
    unknown = staff.post("/api/queues/urgent/pause/")
    assert unknown.status_code == 404 and "urgent" in unknown.json()["detail"]


@covers("POST", "/api/queues/{name}/resume/")
def test_resuming_a_queue_over_the_api_publishes_its_jobs(staff, broker):
    staff.post("/api/queues/low/pause/")
    ids = [str(submit(priority="low").id) for _ in range(2)]

    response = staff.post("/api/queues/low/resume/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["paused"], body["published"], body["depth"]) == (False, 2, 2)
    published = [json.loads(raw)["headers"]["argsrepr"][2:-2] for raw in broker.lrange("low", 0, -1)]
    assert published[::-1] == ids
    assert staff.post("/api/queues/low/resume/").json()["published"] == 0
    assert staff.post("/api/queues/dead_letter/resume/").status_code == 404


@covers("GET", "/api/stats/")
def test_stats_give_counts_queues_dead_letters_workers_and_the_last_hour(staff):
    submit()
    dead()

    body = staff.get("/api/stats/").json()

    assert body["statuses"]["queued"] == 1 and body["statuses"]["dead"] == 1
    assert set(body["statuses"]) == {
        "scheduled",
        "queued",
        "running",
        "waiting",
        "succeeded",
        "retrying",
        "dead",
        "cancelled",
    }
    assert [queue["name"] for queue in body["queues"]] == ["high", "medium", "low"]
    assert body["dead_letter"] == 1
    assert body["workers"] == []  # no worker runs in this test
    assert body["last_hour"] == {"processed": 1, "succeeded": 0, "failed": 1}
