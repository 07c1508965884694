"""Internal job types (`django_task`, the task API's) are submitted by code: the task backend,
`job_submit` from Python, schedules declared in code. A client (/submit-job, /submit-jobs) is
refused, and so is a staff user who chooses such a job's payload (a schedule over the API or the
admin, a resubmit or a retry with an edited payload) without the permission
`jobs.submit_internal_job`. A task named in a payload is looked up without importing its module."""

import io
import json
import sys

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from jobs import services
from jobs.models import Job, Schedule
from jobs.rules.exceptions import InvalidPayload
from jobs.tasks_backend import TASK_JOB_TYPE
from tests.tasks_app.tasks import add

CHARGE = {"task": "tests.tasks_app.tasks.charge", "args": ["4242"]}
SCHEDULE = {"name": "refunds", "job_type": TASK_JOB_TYPE, "payload": CHARGE, "interval_seconds": 60}
SCHEDULE_PERMS = ("view_schedule", "add_schedule", "change_schedule")
JOB_PERMS = ("view_job", "change_job")


def dead_task_job() -> Job:
    """A dead `django_task` job, as code enqueued it."""
    job = Job.objects.get(pk=add.enqueue(1, 2).id)
    Job.objects.filter(pk=job.pk).update(status="dead")
    return job


def test_a_client_cannot_submit_an_internal_type_alone_or_in_a_batch(client_for):
    client = client_for()

    one = client.post("/submit-job", {"type": TASK_JOB_TYPE, "payload": CHARGE}, format="json")
    batch = [{"type": "noop", "payload": {}}, {"type": TASK_JOB_TYPE, "payload": CHARGE}]
    many = client.post("/submit-jobs", {"jobs": batch}, format="json")

    assert one.status_code == 403 and "internal" in one.json()["type"][0]
    assert many.status_code == 400 and many.json()["jobs"][0] == {}
    assert "internal" in many.json()["jobs"][1]["type"][0]
    assert not Job.objects.exists()


def test_a_client_learns_no_internal_type_from_an_unknown_type_error(client_for):
    answer = client_for().post("/submit-job", {"type": "nope", "payload": {}}, format="json")

    assert answer.status_code == 400 and "noop" in answer.json()["type"][0]
    assert TASK_JOB_TYPE not in answer.json()["type"][0]


def test_code_submits_internal_types_without_any_permission():
    result = add.enqueue(1, 2)
    job, created = services.job_submit(type=TASK_JOB_TYPE, payload={"task": "tests.tasks_app.tasks.add", "args": [3]})

    assert created and Job.objects.filter(pk__in=[result.id, job.pk], type=TASK_JOB_TYPE).count() == 2


def test_a_schedule_of_an_internal_type_over_the_api_needs_the_permission(client_for):
    staff = client_for("operator", staff=True, perms=SCHEDULE_PERMS)
    permitted = client_for("lead", staff=True, perms=(*SCHEDULE_PERMS, "submit_internal_job"))
    plain = services.schedule_create(name="plain", job_type="noop", interval_seconds=60)

    refused = staff.post("/api/schedules/", SCHEDULE, format="json")
    retyped = staff.patch(
        f"/api/schedules/{plain.name}/", {"job_type": TASK_JOB_TYPE, "payload": CHARGE}, format="json"
    )
    created = permitted.post("/api/schedules/", SCHEDULE, format="json")
    timing_only = staff.patch("/api/schedules/refunds/", {"interval_seconds": 120}, format="json")
    new_payload = staff.patch("/api/schedules/refunds/", {"payload": {**CHARGE, "args": ["1"]}}, format="json")

    assert refused.status_code == 403 and "internal" in refused.json()["job_type"][0]
    assert retyped.status_code == 403 and Schedule.objects.get(name="plain").job_type == "noop"
    assert created.status_code == 201, created.json()
    assert timing_only.status_code == 200  # the payload code or a permitted user chose stays
    assert new_payload.status_code == 403 and Schedule.objects.get(name="refunds").payload["args"] == ["4242"]


def test_resubmit_and_retry_through_the_api_may_not_choose_an_internal_payload(client_for):
    staff = client_for("operator", staff=True, perms=JOB_PERMS)
    job = dead_task_job()
    edited = {"payload": CHARGE}

    resubmitted = staff.post(f"/api/jobs/{job.pk}/resubmit/", edited, format="json")
    retried = staff.post(f"/api/jobs/{job.pk}/retry/", edited, format="json")
    as_enqueued = staff.post(f"/api/jobs/{job.pk}/resubmit/", {}, format="json")

    assert resubmitted.status_code == 403 and "internal" in resubmitted.json()["type"][0]
    assert retried.status_code == 403 and Job.objects.get(pk=job.pk).status == "dead"
    assert Job.objects.get(pk=job.pk).payload["task"] == "tests.tasks_app.tasks.add"
    assert as_enqueued.status_code == 201  # the same task and arguments code enqueued
    assert Job.objects.get(pk=as_enqueued.json()["id"]).payload["task"] == "tests.tasks_app.tasks.add"


def test_the_admins_edit_and_retry_of_an_internal_job_needs_the_permission(make_user):
    user, _ = make_user("operator", staff=True, perms=JOB_PERMS)
    admin = Client()
    admin.force_login(user)
    job = dead_task_job()

    page = admin.post(f"/admin/jobs/job/{job.pk}/edit-retry/", {"payload": '{"task": "tests.tasks_app.tasks.charge"}'})

    assert page.status_code == 200 and "internal" in page.content.decode()
    assert Job.objects.get(pk=job.pk).status == "dead"


def test_a_schedule_of_an_internal_type_in_the_admin_needs_the_permission(make_user):
    form = {
        **{"name": "refunds", "job_type": TASK_JOB_TYPE, "payload": json.dumps(CHARGE), "priority": "medium"},
        **{"cron": "0 3 * * *", "timezone": "UTC", "enabled": "on", "missed": "skip", "overlap": "allow"},
    }
    pages = {}
    for name, perms in (("operator", SCHEDULE_PERMS), ("lead", (*SCHEDULE_PERMS, "submit_internal_job"))):
        user, _ = make_user(name, staff=True, perms=perms)
        admin = Client()
        admin.force_login(user)
        pages[name] = admin.post("/admin/jobs/schedule/add/", form)

    assert pages["operator"].status_code == 200 and "internal" in pages["operator"].content.decode()
    assert pages["lead"].status_code == 302
    assert Schedule.objects.get().job_type == TASK_JOB_TYPE


def test_the_cli_submits_an_internal_type_for_the_operator_but_not_as_a_user_without_the_permission(make_user):
    make_user("someone")
    payload = json.dumps({"task": "tests.tasks_app.tasks.add", "args": [1, 2]})

    with pytest.raises(CommandError, match="internal"):
        call_command("jobs", "--as", "someone", "submit", TASK_JOB_TYPE, "--payload", payload, stdout=io.StringIO())
    assert not Job.objects.exists()
    call_command("jobs", "submit", TASK_JOB_TYPE, "--payload", payload, stdout=io.StringIO())  # the host's operator
    assert Job.objects.get().payload["args"] == [1, 2]


def test_a_named_task_is_looked_up_without_importing_its_module_or_echoing_errors():
    problems = []
    for path in ("tests.tasks_app.unloaded.never", "tests.tasks_app.missing.task"):
        with pytest.raises(InvalidPayload) as refused:
            services.job_submit(type=TASK_JOB_TYPE, payload={"task": path})
        problems.append(str(refused.value))

    assert "tests.tasks_app.unloaded" not in sys.modules and "tests.tasks_app.missing" not in sys.modules
    assert all("not loaded" in problem and "No module" not in problem for problem in problems), problems
