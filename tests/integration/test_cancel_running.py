"""A running job cancelled from every surface (owner API, management API, admin, CLI): it is
`cancelled` at once, its attempt is closed as cancelled naming who asked, a second cancel is a 409
(the CLI's: exit 1 with a clear error), and the cancelled attempt's late success is refused."""

import io
import json
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from jobs import services
from jobs.models import Job

from .test_cli import cli


def running(owner=None) -> tuple[Job, int]:
    """A job claimed by node w1: running, with its attempt open; returns it and its serial."""
    job, _ = services.job_submit(type="noop", payload={}, owner=owner)
    claim = services.job_claim(job_id=job.pk, worker="w1@host")
    assert claim is not None
    return Job.objects.get(pk=job.pk), claim.serial


def assert_cancelled_by(job: Job, serial: int, username: str) -> None:
    """The job and its attempt say who cancelled it, and the attempt's late success is refused."""
    job.refresh_from_db()
    by = f"cancelled by {username}"
    assert (job.status, job.reason, job.lease_expires_at) == ("cancelled", by, None)
    assert job.finished_at is not None
    attempt = job.history.get(number=serial)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == ("cancelled", "Cancelled", by)
    assert attempt.finished_at is not None
    late = services.Success(str(job.pk), serial, {"late": True}, timezone.now())
    assert services.jobs_succeed([late]) == []
    job.refresh_from_db()
    assert (job.status, job.result) == ("cancelled", None)


def test_the_owner_cancels_its_running_job_and_nobody_else_can(client_for, broker):
    alice, bob = client_for("alice"), client_for("bob")
    viewer = client_for("viewer", staff=True, perms=("view_job",))
    job, serial = running(owner=alice.user)

    assert bob.post(f"/jobs/{job.pk}/cancel").status_code == 404
    assert viewer.post(f"/jobs/{job.pk}/cancel").status_code == 403
    assert Job.objects.get(pk=job.pk).status == "running"

    answer = alice.post(f"/jobs/{job.pk}/cancel")

    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert_cancelled_by(job, serial, "alice")
    again = alice.post(f"/jobs/{job.pk}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"job {job.pk} is cancelled; a finished job cannot be cancelled"


def test_staff_cancel_a_running_job_through_the_management_api(client_for, broker):
    staff = client_for("operator", staff=True)
    viewer = client_for("viewer", staff=True, perms=("view_job",))
    job, serial = running()

    assert viewer.post(f"/api/jobs/{job.pk}/cancel/").status_code == 403
    assert Job.objects.get(pk=job.pk).status == "running"
    answer = staff.post(f"/api/jobs/{job.pk}/cancel/")

    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert answer.json()["reason"] == "cancelled by operator"
    assert_cancelled_by(job, serial, "operator")
    again = staff.post(f"/api/jobs/{job.pk}/cancel/")
    assert again.status_code == 409 and "finished job cannot be cancelled" in again.json()["detail"]
    assert staff.post("/api/jobs/00000000-0000-4000-8000-000000000000/cancel/").status_code == 404


def test_the_admin_cancels_a_running_job_from_its_page(operator, broker):
    job, serial = running()
    page = operator.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert f'action="/admin/jobs/job/{job.pk}/operate/cancel/"' in page
    assert 'data-confirm="Cancel this running job?' in page and "jobs/confirm.js" in page

    answer = operator.post(f"/admin/jobs/job/{job.pk}/operate/cancel/", follow=True)

    shown = answer.content.decode()
    assert "Cancelled 1 job(s)." in shown
    assert re.search(r'class="jq-badge"[^>]*>cancelled<', shown)
    assert "/operate/cancel/" not in shown  # no Cancel button on a finished job
    assert_cancelled_by(job, serial, "root")
    assert [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(job.pk))] == [
        "Cancelled from the admin"
    ]
    again = operator.post(f"/admin/jobs/job/{job.pk}/operate/cancel/", follow=True).content.decode()
    assert "Not cancelled: job" in again and "a finished job cannot be cancelled" in again


def test_the_overviews_running_list_has_a_cancel_button_for_those_who_may_change_jobs(operator, make_user, broker):
    job, serial = running()
    button = f'action="/admin/jobs/job/{job.pk}/operate/cancel/"'
    assert button in operator.get("/admin/jobs/job/overview/").content.decode()
    viewer, _ = make_user("viewer", staff=True, perms=("view_job", "view_queuestate"))
    looking = Client()
    looking.force_login(viewer)
    assert button not in looking.get("/admin/jobs/job/overview/").content.decode()
    assert button not in looking.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert looking.post(f"/admin/jobs/job/{job.pk}/operate/cancel/").status_code == 403

    answer = operator.post(f"/admin/jobs/job/{job.pk}/operate/cancel/", {"next": "overview"})

    assert answer.status_code == 302 and answer["Location"] == "/admin/jobs/job/overview/"
    assert_cancelled_by(job, serial, "root")


def test_the_admins_bulk_cancel_takes_running_jobs_and_spares_finished_ones(operator, broker):
    job, serial = running()
    finished, _ = running()
    services.job_cancel(job_id=finished.pk)

    answer = operator.post(
        "/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [job.pk, finished.pk]}, follow=True
    )

    shown = answer.content.decode()
    assert "Cancelled 1 job(s)." in shown and "Not cancelled:" in shown
    assert_cancelled_by(job, serial, "root")
    assert Job.objects.get(pk=finished.pk).reason == "cancelled by an operator"


def test_the_cli_cancels_a_running_job_as_its_actor(make_user, broker):
    make_user("carol", staff=True)
    make_user("viewer", staff=True, perms=("view_job",))
    job, serial = running()
    out = io.StringIO()
    with pytest.raises(CommandError) as not_allowed:
        call_command("jobs", "--as", "viewer", "cancel", str(job.pk), stdout=out)
    assert not_allowed.value.returncode == 1 and "jobs.change_job" in str(not_allowed.value)
    assert Job.objects.get(pk=job.pk).status == "running"

    call_command("jobs", "--json", "--as", "carol", "cancel", str(job.pk), stdout=out)

    assert json.loads(out.getvalue())["status"] == "cancelled"
    assert_cancelled_by(job, serial, "carol")
    with pytest.raises(CommandError) as refused:
        call_command("jobs", "--as", "carol", "cancel", str(job.pk), stdout=io.StringIO())
    assert refused.value.returncode == 1
    assert str(refused.value) == f"job {job.pk} is cancelled; a finished job cannot be cancelled"


def test_the_cli_without_an_actor_names_an_operator_and_a_second_cancel_exits_1(broker):
    job, serial = running()

    first = cli("cancel", str(job.pk))
    second = cli("cancel", str(job.pk))

    assert first.returncode == 0, first.stderr
    assert_cancelled_by(job, serial, "an operator")
    assert second.returncode == 1
    assert "a finished job cannot be cancelled" in second.stderr and "Traceback" not in second.stderr
