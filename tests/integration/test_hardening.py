"""Input an attacker would send: refused at submit, naming the field, before anything is stored."""

from django.utils import timezone

from jobs.models import Job, JobArtifact
from tasks import handlers
from tasks.context import JobContext


def test_a_payload_with_a_lone_surrogate_is_refused_by_both_submit_endpoints(client_for):
    client = client_for()
    single = '{"type": "noop", "payload": {"x": "\\ud800"}}'
    bulk = '{"jobs": [{"type": "noop", "payload": {"x": "ok"}}, {"type": "noop", "payload": {"x": "\\ud800"}}]}'

    answers = [
        client.post("/submit-job", single, content_type="application/json"),
        client.post("/submit-jobs", bulk, content_type="application/json"),
    ]

    assert [answer.status_code for answer in answers] == [400, 400]
    assert "not valid Unicode" in answers[0].json()["payload"][0]
    assert answers[1].json()["jobs"][0] == {} and "not valid Unicode" in answers[1].json()["jobs"][1]["payload"][0]
    assert not Job.objects.exists()


def test_an_email_subject_with_a_line_break_is_refused_at_submit(client_for):
    client = client_for()
    body = {"type": "email", "payload": {"to": "a@example.com", "subject": "hi\r\nBcc: all@example.com", "body": "x"}}

    answer = client.post("/submit-job", body, format="json")

    assert answer.status_code == 400
    assert "line break" in str(answer.json()["payload"]["subject"])
    assert not Job.objects.exists()


def test_a_forged_x_forwarded_for_does_not_escape_the_anonymous_rate_limit(db, broker):
    from rest_framework.test import APIClient

    client = APIClient()
    statuses = [client.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"10.{n}.0.1").status_code for n in range(31)]

    assert statuses[:30] == [200] * 30
    assert statuses[30] == 429


def report_for(job: Job) -> dict:
    ctx = JobContext(job_id=str(job.id), attempt=1, serial=job.serial)
    return handlers.report({"hours": 1}, ctx)


def rows_of(result: dict) -> list[list[str]]:
    job_id = result["download"].split("/")[2]
    content = bytes(JobArtifact.objects.get(job_id=job_id, name="report.csv").content).decode()
    return [line.split(",") for line in content.splitlines()[1:]]


def test_a_clients_report_counts_only_its_own_jobs_and_staffs_counts_all(make_user):
    alice, _ = make_user("alice")
    bob, _ = make_user("bob")
    operator, _ = make_user("operator", staff=True)
    for owner, count in ((alice, 2), (bob, 3)):
        Job.objects.bulk_create(Job(type="noop", owner=owner, status="succeeded") for _ in range(count))
    alices_report = Job.objects.create(type="report", owner=alice, status="running", serial=1)
    staff_report = Job.objects.create(type="report", owner=operator, status="running", serial=1)

    alices, staffs = rows_of(report_for(alices_report)), rows_of(report_for(staff_report))

    assert alices == [["noop", "succeeded", "2"], ["report", "running", "1"]]
    assert ["noop", "succeeded", "5"] in staffs


def test_a_report_window_must_run_forwards(client_for):
    client = client_for()
    now = timezone.now()
    payload = {"since": now.isoformat(), "until": (now - timezone.timedelta(hours=1)).isoformat()}

    answer = client.post("/submit-job", {"type": "report", "payload": payload}, format="json")

    assert answer.status_code == 400 and "before until" in str(answer.json())


def test_admin_urls_and_filters_a_staff_user_can_mistype_answer_4xx_not_500(client_for):
    from django.test import Client

    operator = client_for("operator", staff=True).user
    browser = Client(raise_request_exception=False)
    browser.force_login(operator)

    answers = {
        path: browser.get(path).status_code
        for path in (
            "/admin/jobs/job/a%2Fb/change/",
            "/admin/jobs/job/not-a-uuid/change/",
            "/admin/jobs/job/?created_at__year=99999999999",
            "/admin/jobs/deadjob/?created_at__year=99999999999",
        )
    }

    assert answers == {
        "/admin/jobs/job/a%2Fb/change/": 404,
        "/admin/jobs/job/not-a-uuid/change/": 404,
        "/admin/jobs/job/?created_at__year=99999999999": 400,
        "/admin/jobs/deadjob/?created_at__year=99999999999": 400,
    }


def test_ten_failed_admin_logins_lock_that_address_out_even_with_the_right_password(make_user, broker):
    from django.test import Client

    make_user("operator", staff=True)
    attacker, neighbour = Client(REMOTE_ADDR="127.0.0.7"), Client(REMOTE_ADDR="127.0.0.8")
    wrong = {"username": "operator", "password": "guess", "next": "/admin/"}
    right = {**wrong, "password": "pw-operator"}

    failures = [attacker.post("/admin/login/", wrong).status_code for _ in range(10)]
    locked = attacker.post("/admin/login/", right)
    other_address = neighbour.post("/admin/login/", right)

    assert failures == [200] * 10  # the login page again, with its error
    assert locked.status_code == 200 and "Too many failed logins" in locked.content.decode()
    assert other_address.status_code == 302 and other_address["Location"] == "/admin/"


def test_an_idempotency_key_the_database_cannot_store_is_a_400(client_for):
    client = client_for()
    body = '{"type": "noop", "payload": {}, "idempotency_key": "k\\ud800"}'

    answer = client.post("/submit-job", body, content_type="application/json")

    assert answer.status_code == 400, answer.content
    assert not Job.objects.exists()


def test_text_utf8_cannot_carry_is_answered_as_json_escapes_not_a_500():
    import json

    from jobs.api.renderers import JSONRenderer

    body = JSONRenderer().render({"payload": {"x": "\ud800", "name": "Zoë"}})

    assert json.loads(body) == {"payload": {"x": "\ud800", "name": "Zoë"}}
    assert JSONRenderer().render({"name": "Zoë"}) == '{"name":"Zoë"}'.encode()


def test_admin_api_and_docs_pages_carry_a_policy_that_refuses_inline_scripts(client_for):
    from django.test import Client

    anonymous = Client()
    pages = {path: anonymous.get(path) for path in ("/admin/login/", "/api/docs/", "/job-status/x")}
    script = anonymous.get("/api/docs/?script=")

    for path, response in pages.items():
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'", path
        assert (policy["object-src"], policy["frame-ancestors"], policy["base-uri"]) == ("'none'",) * 3, path
    # Swagger UI's start-up script is served as a file of this origin, which the policy allows.
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content
