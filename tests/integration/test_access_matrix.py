"""Who may do what: anonymous, the job's owner, another client, staff who may only view, and staff
who may change and delete, on every API operation (read from the OpenAPI schema, so a new
endpoint joins the matrix by itself) and every admin page."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from jobs import services
from jobs.models import JobArtifact, Schedule
from jobs.throttling import AnonRateThrottle

ROLES = ("anonymous", "owner", "other", "viewer", "staff")
VIEW_ONLY = ("view_job", "view_queuestate", "view_deadjob", "view_schedule", "view_schedulerun")
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
    _, other_token = make_user("other")
    staff, staff_token = make_user("staff", staff=True)
    viewer, viewer_token = make_user("viewer", staff=True, perms=VIEW_ONLY)
    job, _ = services.job_submit(type="noop", payload={}, owner=owner, delay=3600)
    return {
        "job": job,
        "tokens": {"owner": owner_token, "other": other_token, "viewer": viewer_token, "staff": staff_token},
        "users": {"owner": owner, "viewer": viewer, "staff": staff},
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
        if role in ("owner", "other") or (role == "viewer" and method != "get"):
            return {403}
        return {200, 201, 204, 409}
    if path.startswith("/job-status/"):
        return {404} if role == "other" else {200}
    if "/artifacts/" in path:  # a job's files: whoever may see the job
        return {404} if role == "other" else {200}
    if path.startswith("/jobs/"):  # the client's side: only the job's owner, staff included
        return {200} if role == "owner" else {404}
    return {200, 201}


def operations() -> list[tuple[str, str]]:
    document = APIClient().get("/api/schema/", {"format": "json"}).json()
    return sorted((method, path) for path, item in document["paths"].items() for method in item if method in METHODS)


def test_every_api_operation_answers_each_role_as_expected(world):
    problems = []
    for method, template in operations():
        for role in ROLES:
            # A fresh job of the owner's each time: a DELETE or a cancel must not change the next answer.
            job, _ = services.job_submit(type="noop", payload={}, owner=world["users"]["owner"], delay=3600)
            JobArtifact.objects.create(job=job, name="low", content=b"a file", size=6)
            a_schedule_named_low()
            path = template.replace("{job_id}", str(job.pk)).replace("{name}", "low").replace("{type}", "test.limited")
            body = None if method == "get" else BODIES.get(template)
            response = getattr(api_client(world, role), method)(path, body, format="json")
            if response.status_code not in expected(method, template, role):
                problems.append(f"{method.upper()} {template} as {role}: {response.status_code}")
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

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert not_staff.status_code == 302 and "/admin/login/" in not_staff["Location"]
    assert staff_without_permissions.status_code == (200 if path == "/admin/" else 403)
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
