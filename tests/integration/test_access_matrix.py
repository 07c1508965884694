"""Who may do what: anonymous, the job's owner, another client, staff without any permission,
staff who may only manage schedules, staff who may only view, and staff who may change and
delete, on every API operation (read from the OpenAPI schema, so a new endpoint joins the matrix
by itself) and every admin page; and a client submitting an internal job type, on every
endpoint that submits."""

import json
from mailbox import Maildir

import pytest
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import path
from rest_framework.test import APIClient

from jobqueue_site import urls as site_urls
from jobs import services
from jobs.admin.devmail import mailbox
from jobs.api.throttling import AnonRateThrottle
from jobs.models import Job, JobArtifact, Schedule
from tasks import handlers
from tasks.context import JobContext

ROLES = ("anonymous", "owner", "other", "bare", "scheduler", "viewer", "staff")
VIEW_ONLY = ("view_job", "view_queuestate", "view_deadjob", "view_schedule", "view_schedulerun")
SCHEDULES_ONLY = ("view_schedule", "add_schedule", "change_schedule", "delete_schedule", "view_schedulerun")
# Roles that may not see the owner's jobs: no answer to them may carry the job's payload.
BLIND = ("anonymous", "other", "bare", "scheduler")
SECRET = "owner-secret-7f3a"
METHODS = {"get", "post", "patch", "delete"}
BODIES = {
    "/submit-job": {"type": "noop", "payload": {}},
    "/submit-jobs": {"jobs": [{"type": "noop", "payload": {}}]},
    "/api/schedules/": {"name": "made", "job_type": "noop", "interval_seconds": 60},
}


def a_schedule_named_low() -> None:
    """The schedule `{name}` stands for, made again when an operation deleted it."""
    Schedule.objects.filter(name="made").delete()
    if not Schedule.objects.filter(name="low").exists():
        services.schedule_create(name="low", job_type="noop", interval_seconds=60)


@pytest.fixture(autouse=True)
def _anonymous_unthrottled(monkeypatch):
    """The matrix asks more than the anonymous limit (refused tokens count toward it) allows."""
    monkeypatch.setattr(AnonRateThrottle, "rate", "100000/minute", raising=False)


@pytest.fixture
def world(make_user):
    owner, owner_token = make_user("owner")
    other, other_token = make_user("other")
    staff, staff_token = make_user("staff", staff=True)
    viewer, viewer_token = make_user("viewer", staff=True, perms=VIEW_ONLY)
    bare, bare_token = make_user("bare", staff=True, perms=())
    scheduler, scheduler_token = make_user("scheduler", staff=True, perms=SCHEDULES_ONLY)
    job, _ = services.job_submit(type="noop", payload={}, owner=owner, delay=3600)
    tokens = {"owner": owner_token, "other": other_token, "viewer": viewer_token, "staff": staff_token}
    return {
        "job": job,
        "tokens": {**tokens, "bare": bare_token, "scheduler": scheduler_token},
        "users": {
            "owner": owner,
            "other": other,
            "bare": bare,
            "scheduler": scheduler,
            "viewer": viewer,
            "staff": staff,
        },
    }


def api_client(world, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][role]}")
    return client


def expected(method: str, path: str, role: str) -> set[int]:
    if role == "anonymous":
        return {401}
    if path.startswith("/api/"):
        allowed = {200, 201, 204, 409}
        if role == "staff" or (role == "viewer" and method == "get"):
            return allowed
        return allowed if role == "scheduler" and path.startswith("/api/schedules/") else {403}
    sees_the_job = role in ("owner", "viewer", "staff")  # its owner, and staff who may view jobs
    if path.startswith("/job-status/") or "/artifacts/" in path:
        return {200} if sees_the_job else {404}
    if path.startswith("/jobs/"):  # cancel: its owner, and staff who may change jobs; 403 if seen but not
        return ({200} if role in ("owner", "staff") else {403}) if sees_the_job else {404}
    return {200, 201}


def operations() -> list[tuple[str, str]]:
    document = APIClient().get("/api/schema/", {"format": "json"}).json()
    return sorted((method, path) for path, item in document["paths"].items() for method in item if method in METHODS)


def test_every_api_operation_answers_each_role_as_expected(world):
    problems = []
    for method, template in operations():
        for role in ROLES:
            # A fresh job of the owner's each time: a DELETE or a cancel must not change the next answer.
            job, _ = services.job_submit(
                type="noop", payload={"note": SECRET}, owner=world["users"]["owner"], delay=3600
            )
            JobArtifact.objects.create(job=job, name="low", content=SECRET.encode(), size=len(SECRET))
            a_schedule_named_low()
            path = template.replace("{job_id}", str(job.pk)).replace("{name}", "low").replace("{type}", "test.limited")
            body = None if method == "get" else BODIES.get(template)
            response = getattr(api_client(world, role), method)(path, body, format="json")
            if response.status_code not in expected(method, template, role):
                problems.append(f"{method.upper()} {template} as {role}: {response.status_code}")
            elif role in BLIND and SECRET in response.content.decode(errors="replace"):
                problems.append(f"{method.upper()} {template} as {role}: shows the owner's job")
    assert not problems, "\n".join(problems)


ADMIN_PAGES = (
    "/admin/",
    "/admin/jobs/job/",
    "/admin/jobs/job/overview/",
    "/admin/jobs/job/overview/live/",
    "/admin/jobs/job/{job_id}/change/",
    "/admin/jobs/deadjob/",
    "/admin/jobs/job/{job_id}/edit-retry/",
    "/admin/jobs/schedule/",
    "/admin/jobs/schedule/add/",
    "/admin/jobs/schedule/{schedule_id}/change/",
    "/admin/jobs/schedulerun/",
)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_pages_need_a_staff_login_and_the_jobs_permissions(world, page, make_user):
    nightly = services.schedule_create(name="nightly", job_type="noop", cron="@daily")
    path = page.replace("{job_id}", str(world["job"].pk)).replace("{schedule_id}", str(nightly.pk))
    operator = world["users"]["staff"]
    bare_staff, _ = make_user("bare-staff", staff=True, perms=())

    anonymous = Client().get(path)
    not_staff = logged_in(world["users"]["owner"]).get(path)
    staff_without_permissions = logged_in(bare_staff).get(path)
    staff_for_schedules = logged_in(world["users"]["scheduler"]).get(path)

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert not_staff.status_code == 302 and "/admin/login/" in not_staff["Location"]
    assert staff_without_permissions.status_code == (200 if path == "/admin/" else 403)
    assert staff_for_schedules.status_code == (200 if path == "/admin/" or "/schedule" in path else 403)
    # Editing the payload is offered for dead jobs only; for this scheduled one it sends back to its page.
    assert logged_in(operator).get(path).status_code == (302 if "edit-retry" in path else 200)


def test_api_changes_are_written_to_the_admin_history_with_their_actor(world):
    from django.contrib.admin.models import LogEntry

    job = world["job"]
    client = api_client(world, "staff")

    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    assert client.post("/api/queues/low/pause/").status_code == 200
    assert client.delete(f"/api/jobs/{job.pk}/").status_code == 204

    entries = [
        (e.user.username, e.object_repr.split()[0], e.get_change_message()) for e in LogEntry.objects.order_by("pk")
    ]
    assert [(user, message) for user, _, message in entries] == [
        ("staff", "Cancelled through the API"),
        ("staff", "Paused through the API"),
        ("staff", "Deleted through the API"),
    ]


def a_dead_job(owner):
    job, _ = services.job_submit(type="test.fail", payload={}, owner=owner, max_retries=0)
    claim = services.job_claim(job_id=job.pk, worker="w1")
    assert services.job_fail(job_id=job.pk, serial=claim.serial, error_type="E", message="m") == "dead"
    return job


def test_every_api_write_by_staff_with_the_permissions_is_in_the_admin_history(world):
    from django.contrib.admin.models import LogEntry

    client = api_client(world, "staff")
    writes = [(m, p) for m, p in operations() if p.startswith("/api/") and m != "get"]
    assert len(writes) >= 8, writes
    problems = []
    for method, template in writes:
        # A dead job suits retry, resubmit, delete and the dead-letter operations; cancel and run
        # now need a waiting one.
        dead = a_dead_job(world["users"]["owner"])
        waiting, _ = services.job_submit(type="noop", payload={}, delay=3600)
        job = waiting if template.endswith(("/cancel/", "/run-now/")) else dead
        if template.endswith("/resume/"):
            services.queue_pause(queue="low", by="test")
        a_schedule_named_low()
        if template.startswith("/api/limits/"):
            services.limit_set(type="test.limited", concurrency=2, by="test")  # clear needs an override
        path = template.replace("{job_id}", str(job.pk)).replace("{name}", "low").replace("{type}", "test.limited")
        before = LogEntry.objects.count()
        response = getattr(client, method)(path, BODIES.get(template), format="json")
        new = list(LogEntry.objects.order_by("pk")[before:])
        if response.status_code not in (200, 201, 204):
            problems.append(f"{method.upper()} {template}: {response.status_code}")
        elif not new or any(entry.user.username != "staff" for entry in new):
            problems.append(f"{method.upper()} {template}: history {[(e.user.username, str(e)) for e in new]}")
    assert not problems, "\n".join(problems)


def test_staff_with_only_schedule_permissions_get_no_jobs_body_from_a_trigger(world):
    services.schedule_create(name="nightly", job_type="noop", interval_seconds=60, payload={"note": SECRET})

    scheduler = api_client(world, "scheduler").post("/api/schedules/nightly/trigger/")
    staff = api_client(world, "staff").post("/api/schedules/nightly/trigger/")

    assert scheduler.status_code == staff.status_code == 201
    assert set(scheduler.json()) == {"id", "status"}
    assert Job.objects.filter(pk=scheduler.json()["id"], status=scheduler.json()["status"]).exists()
    assert staff.json()["payload"] == {"note": SECRET}  # those who may view jobs get the whole job


def counted(job: Job) -> dict[str, int]:
    """What a report job counts: {type: jobs}, read from its CSV."""
    result = handlers.report({"hours": 1}, JobContext(job_id=str(job.id), attempt=1, serial=job.serial))
    content = bytes(JobArtifact.objects.get(job=job, name="report.csv").content).decode()
    assert result["rows"] == len(content.splitlines()) - 1
    return {kind: int(count) for kind, _, count in (line.split(",") for line in content.splitlines()[1:])}


def test_a_report_counts_every_tenant_only_for_staff_who_may_view_jobs(world):
    users = world["users"]
    Job.objects.bulk_create(Job(type="test.other", owner=users["staff"], status="succeeded") for _ in range(3))
    reports = {
        role: Job.objects.create(type="report", owner=users[role], status="running", serial=1)
        for role in ("bare", "scheduler", "viewer")
    }

    assert counted(reports["bare"]) == {"report": 1}
    assert counted(reports["scheduler"]) == {"report": 1}
    assert counted(reports["viewer"]) == {"noop": 1, "report": 3, "test.other": 3}


# The site's URLs as DEBUG=1 builds them, with the development mailbox.
urlpatterns = [path("admin/mail/", admin.site.admin_view(mailbox), name="dev-mailbox"), *site_urls.urlpatterns]


def test_the_development_mailbox_needs_the_permission_to_view_jobs_and_survives_a_malformed_message(world, tmp_path):
    box = Maildir(tmp_path / "mail", create=True)
    box.add(b"Subject: welcome\r\n\r\nhello\r\n")
    box.add(b"Subject: odd\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nh\xe9llo\r\n")
    with override_settings(DEBUG=True, JOB_DEV_MAILDIR=tmp_path / "mail", ROOT_URLCONF=__name__):
        answers = {role: logged_in(world["users"][role]).get("/admin/mail/") for role in ROLES[1:]}
        front = {role: logged_in(world["users"][role]).get("/admin/").content.decode() for role in ("bare", "staff")}

    assert {role: answer.status_code for role, answer in answers.items()} == {
        "owner": 302,
        "other": 302,
        "bare": 403,
        "scheduler": 403,
        "viewer": 200,
        "staff": 200,
    }
    assert "welcome" in answers["staff"].content.decode() and "h\ufffdllo" in answers["staff"].content.decode()
    assert "Mail (dev)" in front["staff"] and "Mail (dev)" not in front["bare"]


# A client submitting an internal job type (the task API's, reachable from code only): refused with
# a 4xx on every endpoint that submits, and no job or schedule comes of it. The schedules API is
# asked by staff who may manage schedules, and nothing more.
INTERNAL = {"type": "django_task", "payload": {"task": "tests.tasks_app.tasks.add", "args": [1, 2]}}
SUBMITTING = {
    "submit-job": ("owner", "post", "/submit-job", INTERNAL),
    "submit-jobs": ("owner", "post", "/submit-jobs", {"jobs": [{"type": "noop", "payload": {}}, INTERNAL]}),
    "schedule-create": (
        "scheduler",
        "post",
        "/api/schedules/",
        {"name": "made", "job_type": INTERNAL["type"], "payload": INTERNAL["payload"], "interval_seconds": 60},
    ),
    "schedule-update": (
        "scheduler",
        "patch",
        "/api/schedules/low/",
        {"job_type": INTERNAL["type"], "payload": INTERNAL["payload"]},
    ),
}


ADMIN_SCHEDULE = {
    "name": "made-in-admin",
    "priority": "medium",
    "interval_seconds": "60",
    "timezone": "UTC",
    "enabled": "on",
    "missed": "skip",
    "overlap": "allow",
}


def test_a_client_submitting_an_internal_type_is_refused_on_every_submitting_endpoint(world):
    problems = []
    for endpoint, (role, method, url, body) in SUBMITTING.items():
        a_schedule_named_low()
        jobs_before = Job.objects.count()
        schedules_before = sorted(Schedule.objects.values_list("name", "job_type"))

        response = getattr(api_client(world, role), method)(url, body, format="json")

        if not 400 <= response.status_code < 500:
            problems.append(f"{endpoint}: {response.status_code}")
        if Job.objects.count() != jobs_before:
            problems.append(f"{endpoint}: a job was made")
        if sorted(Schedule.objects.values_list("name", "job_type")) != schedules_before:
            problems.append(f"{endpoint}: a schedule was made or changed")
    # The admin's schedule form, by staff who may manage schedules: refused is the form again
    # with an error (200), not the redirect of a saved schedule.
    form = {**ADMIN_SCHEDULE, "job_type": INTERNAL["type"], "payload": json.dumps(INTERNAL["payload"])}
    answer = logged_in(world["users"]["scheduler"]).post("/admin/jobs/schedule/add/", form)
    if answer.status_code != 200 or Schedule.objects.filter(name=form["name"]).exists():
        problems.append(f"admin schedule form: {answer.status_code}")
    assert not problems, "\n".join(problems)
