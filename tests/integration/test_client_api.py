"""The client's side of the API: its own jobs listed and cancelled, tracebacks kept for staff,
an idempotency key that stands for one submission, times with their zone, our own 413."""

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobArtifact
from tests.api_coverage import covers

WELCOME = {"type": "email_welcome", "payload": {"email": "new@example.com"}}


def submit(client, **fields):
    response = client.post("/submit-job", {**WELCOME, **fields}, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


@covers("GET", "/jobs")
def test_a_client_lists_its_own_jobs_only_newest_first_filtered_and_paged(client_for):
    alice, bob = client_for("alice"), client_for("bob")
    mine = [submit(alice)["id"] for _ in range(3)]
    later = submit(alice, delay=600)["id"]
    submit(bob)

    listed = alice.get("/jobs").json()
    assert listed["count"] == 4 and [job["id"] for job in listed["results"]] == [later, *reversed(mine)]
    assert {job["owner"] for job in listed["results"]} == {"alice"}
    assert [job["id"] for job in alice.get("/jobs", {"status": "scheduled"}).json()["results"]] == [later]
    page = alice.get("/jobs", {"page_size": 2, "page": 2}).json()
    assert [job["id"] for job in page["results"]] == list(reversed(mine))[1:]
    assert bob.get("/jobs").json()["count"] == 1

    bad = alice.get("/jobs", {"status": "nonsense"})
    assert bad.status_code == 400 and "status" in bad.json()
    assert alice.get("/jobs", {"colour": "red"}).json() == {"colour": ["unknown field"]}
    anonymous = alice.__class__().get("/jobs")
    assert anonymous.status_code == 401


@covers("POST", "/jobs/{job_id}/cancel")
def test_a_client_cancels_its_own_waiting_or_running_job_and_nobody_elses(client_for):
    alice, bob, operator = client_for("alice"), client_for("bob"), client_for("operator", staff=True)
    waiting = submit(alice, delay=600)["id"]

    viewer = client_for("viewer", staff=True, perms=("view_job",))
    assert bob.post(f"/jobs/{waiting}/cancel").status_code == 404
    assert viewer.post(f"/jobs/{waiting}/cancel").status_code == 403  # it may read the job, not change it
    staffs = submit(alice, delay=600)["id"]
    assert operator.post(f"/jobs/{staffs}/cancel").json()["status"] == "cancelled"  # staff who may change jobs
    assert alice.post("/jobs/not-a-uuid/cancel").status_code == 404
    answer = alice.post(f"/jobs/{waiting}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert Job.objects.get(pk=waiting).status == "cancelled"

    again = alice.post(f"/jobs/{waiting}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    running = submit(alice)["id"]
    services.job_claim(job_id=running, worker="w1")
    assert bob.post(f"/jobs/{running}/cancel").status_code == 404
    assert alice.post(f"/jobs/{running}/cancel").json()["status"] == "cancelled"
    assert Job.objects.get(pk=running).reason == "cancelled by alice"


@covers("GET", "/job-status/{job_id}")
def test_a_traceback_is_shown_to_staff_who_may_view_jobs_and_to_nobody_else(client_for):
    client, operator = client_for("alice"), client_for("operator", staff=True, perms=("view_job",))
    no_permission = client_for("helpdesk", staff=True, perms=())
    job_id = submit(client, type="test.fail", payload={"fail": True}, max_retries=0)["id"]
    claim = services.job_claim(job_id=job_id, worker="w1")
    trace = 'Traceback (most recent call last):\n  File "/srv/app/secret.py", line 3\nValueError: boom'
    services.job_fail(job_id=job_id, serial=claim.serial, error_type="ValueError", message="boom", traceback=trace)

    own = client.get(f"/job-status/{job_id}").json()
    assert own["status"] == "dead" and own["error"] == {"type": "ValueError", "message": "boom"}
    assert "secret.py" not in str(client.get("/jobs").json())
    assert no_permission.get(f"/job-status/{job_id}").status_code == 404  # staff without view_job: a client
    assert operator.get(f"/job-status/{job_id}").json()["error"]["traceback"] == trace


@covers("POST", "/submit-job")
def test_an_idempotency_key_reused_for_another_submission_is_a_422_naming_the_key(client_for):
    client = client_for()
    first = client.post("/submit-job", WELCOME, format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    same = client.post("/submit-job", WELCOME, format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    assert (first.status_code, same.status_code, same.json()["id"]) == (201, 200, first.json()["id"])

    for other in ({"payload": {"email": "other@example.com"}}, {"priority": "high"}, {"type": "noop", "payload": {}}):
        refused = client.post("/submit-job", {**WELCOME, **other}, format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
        assert refused.status_code == 422, other
        assert "signup-1" in refused.json()["idempotency_key"][0]
    bulk_body = {"jobs": [{**WELCOME, "priority": "low", "idempotency_key": "signup-1"}]}
    bulk = client.post("/submit-jobs", bulk_body, format="json")
    assert bulk.status_code == 422 and "signup-1" in bulk.json()["idempotency_key"][0]
    assert Job.objects.count() == 1


def test_a_run_at_without_a_time_zone_is_refused_not_guessed(client_for):
    client = client_for()
    tomorrow = timezone.now() + timedelta(days=1)

    naive = client.post("/submit-job", {**WELCOME, "run_at": tomorrow.strftime("%Y-%m-%dT%H:%M:%S")}, format="json")
    assert naive.status_code == 400 and "time zone" in naive.json()["run_at"][0]
    for zoned in (tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ"), tomorrow.strftime("%Y-%m-%dT%H:%M:%S+02:00")):
        assert client.post("/submit-job", {**WELCOME, "run_at": zoned}, format="json").status_code == 201
    assert Job.objects.count() == 2


def test_an_oversized_body_is_refused_with_our_own_message(client_for):
    client = client_for()
    limit = 1024 * 1024
    body = '{"type": "noop", "payload": {"blob": "' + "x" * (2 * limit) + '"}}'

    answer = client.post("/submit-job", body, content_type="application/json")

    assert answer.status_code == 413
    expected = f"request body too large: the limit is {limit} bytes (JOB_MAX_REQUEST_BYTES)"
    assert answer.json() == {"detail": expected}
    assert "DATA_UPLOAD" not in answer.content.decode()


def run_report(job_id: str) -> dict:
    """One attempt of a report job, as a worker runs it: the claim, the handler, the success."""
    from tasks import handlers
    from tasks.context import JobContext

    claim = services.job_claim(job_id=job_id, worker="w1")
    job = Job.objects.get(pk=job_id)
    result = handlers.report(job.payload, JobContext(job_id=job_id, attempt=claim.attempt, serial=claim.serial))
    services.jobs_succeed([services.Success(str(job_id), claim.serial, result, timezone.now())])
    return result


@covers("GET", "/jobs/{job_id}/artifacts/{name}")
def test_a_reports_csv_is_downloaded_by_its_owner_and_staff_who_view_jobs_and_nobody_else(client_for):
    alice, bob = client_for("alice"), client_for("bob")
    viewer = client_for("viewer", staff=True, perms=("view_job",))
    submit(alice)
    report = submit(alice, type="report", payload={"hours": 1})["id"]
    run_report(report)

    status = alice.get(f"/job-status/{report}").json()
    download = status["result"]["download"]
    assert download == f"/jobs/{report}/artifacts/report.csv" and "path" not in status["result"]
    answer = alice.get(download)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    assert answer["Content-Disposition"] == 'attachment; filename="report.csv"'
    rows = answer.content.decode().splitlines()
    assert rows[0] == "type,status,count" and "email_welcome,queued,1" in rows
    assert viewer.get(download).status_code == 200

    assert bob.get(download).status_code == 404  # another client's job is missing, not forbidden
    assert alice.get(f"/jobs/{report}/artifacts/other.csv").status_code == 404
    assert alice.get("/jobs/not-a-uuid/artifacts/report.csv").status_code == 404
    assert alice.__class__().get(download).status_code == 401
    Job.objects.filter(pk=report).delete()  # a job's files go with it
    assert not JobArtifact.objects.exists()


@override_settings(JOB_MAX_ARTIFACT_BYTES=10)
def test_an_artifact_needs_a_plain_name_a_bounded_size_and_a_running_attempt(client_for):
    from tasks.context import JobContext

    job = submit(client_for("alice"))["id"]
    claim = services.job_claim(job_id=job, worker="w1")
    ctx = JobContext(job_id=job, attempt=claim.attempt, serial=claim.serial)

    for name, content, problem in (("../etc/passwd", b"x", "artifact name"), ("big.bin", b"x" * 11, "11 bytes")):
        try:
            ctx.save_artifact(name, content)
        except ValueError as exc:
            assert problem in str(exc)
        else:
            raise AssertionError(f"{name} was kept")
    assert ctx.save_artifact("ok.txt", "fits") == f"/jobs/{job}/artifacts/ok.txt"
    stale = JobContext(job_id=job, attempt=claim.attempt, serial=claim.serial - 1)
    assert not services.job_artifact_save(
        job_id=job, serial=stale.serial, name="late.txt", content=b"", content_type=""
    )
    assert list(JobArtifact.objects.values_list("name", flat=True)) == ["ok.txt"]
