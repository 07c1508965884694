"""The admin dashboard over Django's test client: lists, job page, actions, dead letters, overview."""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from jobs import services
from jobs.models import Job, QueueState

CHANGELIST = "/admin/jobs/job/"


def submit(**overrides) -> Job:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def dead(payload: dict | None = None, message: str = "boom") -> Job:
    job = submit(type="test.fail", payload={"fail": True} if payload is None else payload, max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1@host")
    services.job_fail(
        job_id=job.id, serial=claim.serial, error_type="RuntimeError", message=message, traceback="Traceback: line 1"
    )
    return job


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def history(job_or_state) -> list[str]:
    return [entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(job_or_state.pk))]


def test_the_job_list_shows_status_colour_priority_attempts_progress_and_age(operator):
    broken = dead()
    submit(priority="high")

    page = html(operator.get(CHANGELIST))

    assert 'class="jq-badge" style="background:#dc3545">dead<' in page
    assert 'class="jq-progress"' in page and "1 / 1" in page and str(broken.id)[:8] in page
    for column in ("type", "status_badge", "priority", "attempts_of", "progress_bar", "age"):
        assert re.search(f'<th scope="col" class="[^"]*column-{column}[ "]', page), column


def test_the_job_list_filters_by_status_priority_type_and_date(operator):
    broken = dead()
    queued = submit(priority="low")

    page = html(operator.get(CHANGELIST, {"status__exact": "dead"}))

    assert str(broken.id)[:8] in page and str(queued.id)[:8] not in page
    assert str(queued.id)[:8] in html(operator.get(CHANGELIST, {"priority__exact": "low"}))
    assert str(broken.id)[:8] in html(operator.get(CHANGELIST, {"type": "test.fail"}))
    assert str(queued.id)[:8] in html(operator.get(CHANGELIST, {"created_at__gte": "2000-01-01 00:00:00+00:00"}))


@pytest.mark.parametrize(("term", "expected"), [("ACME-7", "payload"), ("smtp refused", "error"), ("test.sle", "type")])
def test_search_finds_id_type_error_text_and_payload_content(operator, term, expected):
    jobs = {
        "payload": submit(payload={"customer": "acme-7"}),
        "error": dead(message="SMTP refused the message"),
        "type": submit(type="test.sleep"),
    }

    page = html(operator.get(CHANGELIST, {"q": term}))

    assert str(jobs[expected].id)[:8] in page
    others = [job for name, job in jobs.items() if name != expected]
    assert not any(str(job.id)[:8] in page for job in others)
    assert str(jobs["payload"].id)[:8] in html(operator.get(CHANGELIST, {"q": str(jobs["payload"].id)}))


def test_the_job_page_shows_payload_error_traceback_history_and_buttons(operator):
    job = dead(payload={"fail": True, "to": "ann@example.com"})

    page = html(operator.get(f"{CHANGELIST}{job.id}/change/"))

    assert "&quot;to&quot;: &quot;ann@example.com&quot;" in page
    assert "retries exhausted" in page and "Traceback: line 1" in page and "boom" in page
    assert "attempt history" in page.lower() and "w1@host" in page
    assert "Edit payload and retry" in page and f"/admin/jobs/job/{job.id}/operate/retry/" in page
    assert 'name="_save"' not in page  # read-only: changes go through the actions


def test_list_actions_go_through_the_services_and_are_logged(operator, broker):
    broken, waiting, done = dead(), submit(delay=60), dead()

    operator.post(CHANGELIST, {"action": "retry_jobs", "_selected_action": [broken.id, waiting.id]})
    operator.post(CHANGELIST, {"action": "cancel_jobs", "_selected_action": [waiting.id]})
    operator.post(CHANGELIST, {"action": "resubmit_jobs", "_selected_action": [done.id]})

    statuses = dict(Job.objects.values_list("pk", "status"))
    assert (statuses[broken.id], statuses[waiting.id], statuses[done.id]) == ("queued", "cancelled", "dead")
    assert Job.objects.filter(resubmitted_from=done).count() == 1
    assert history(broken) == ["Retried from the admin"]
    assert history(waiting) == ["Cancelled from the admin"]
    assert history(done)[0].startswith("Resubmitted from the admin as job ")


def test_deleting_goes_through_the_service_and_spares_running_jobs(operator, broker):
    gone = dead()
    running = submit()
    services.job_claim(job_id=running.id, worker="w1")

    both = {"action": "delete_selected", "_selected_action": [gone.id, running.id]}
    confirmation = html(operator.post(CHANGELIST, both))
    assert "Cannot delete jobs" in confirmation
    assert operator.post(CHANGELIST, {**both, "post": "yes"}).status_code == 403

    response = operator.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [gone.id], "post": "yes"})

    assert response.status_code == 302
    assert list(Job.objects.values_list("pk", flat=True)) == [running.id]
    assert broker.llen("dead_letter") == 0
    assert LogEntry.objects.filter(object_id=str(gone.id)).get().is_deletion()
    assert not LogEntry.objects.filter(object_id=str(running.id)).exists()
    assert operator.get(f"{CHANGELIST}{running.id}/delete/").status_code == 403


def test_the_dead_letter_queue_lists_dead_jobs_with_reason_and_edit_link(operator):
    broken = dead(message="mailbox full")
    alive = submit()

    page = html(operator.get("/admin/jobs/deadjob/"))

    assert str(broken.id)[:8] in page and str(alive.id)[:8] not in page
    assert "retries exhausted" in page and "RuntimeError: mailbox full" in page
    assert f"/admin/jobs/job/{broken.id}/edit-retry/" in page


def test_the_dead_letter_queue_lists_the_most_recently_dead_first(operator):
    first, second, third = dead(), dead(), dead()
    now = timezone.now()
    for job, died_ago in ((first, 1), (second, 30), (third, 5)):  # created first..third; died in another order
        Job.objects.filter(pk=job.pk).update(finished_at=now - timedelta(minutes=died_ago))

    page = html(operator.get("/admin/jobs/deadjob/"))

    shown = sorted((page.index(str(job.id)[:8]), name) for name, job in (("1", first), ("2", second), ("3", third)))
    assert [name for _, name in shown] == ["1", "3", "2"]


def test_the_view_site_link_opens_a_page(operator):
    front = html(operator.get("/admin/"))
    [link] = re.findall(r'<a href="([^"]+)">View site</a>', front)

    assert operator.get(link).status_code == 200


def test_edit_payload_and_retry_validates_then_requeues_and_logs(operator, broker):
    job = dead(payload={"fail": True})
    url = f"/admin/jobs/job/{job.id}/edit-retry/"

    form = html(operator.get(url))
    assert "&quot;fail&quot;: true" in form and "retries exhausted" in form
    assert f'<a href="/admin/jobs/job/{job.id}/change/">{job.id}</a>' in form  # the breadcrumbs' link to the job
    assert "Not valid JSON" in html(operator.post(url, {"payload": "{fail: false"}))
    assert "must be a JSON object" in html(operator.post(url, {"payload": "[1]"}))
    response = operator.post(url, {"payload": '{"fail": false}'})

    assert response.status_code == 302 and response["Location"].endswith(f"/admin/jobs/job/{job.id}/change/")
    job.refresh_from_db()
    assert (job.status, job.payload, job.attempts) == ("queued", {"fail": False}, 0)
    assert history(job) == ["Retried from the admin with an edited payload"]
    assert operator.get(url).status_code == 302  # no longer dead: back to the job page


def test_edit_payload_names_the_field_a_validator_refuses(operator):
    job = submit(type="email_welcome", payload={"email": "a@example.com"}, max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="SMTPError", message="down")

    page = html(operator.post(f"/admin/jobs/job/{job.id}/edit-retry/", {"payload": '{"email": "nope"}'}))

    assert "email: Enter a valid email address." in page
    assert Job.objects.get(pk=job.id).status == "dead"


def test_one_job_buttons_cancel_and_resubmit(operator):
    waiting = submit(delay=60)

    cancelled = operator.post(f"/admin/jobs/job/{waiting.id}/operate/cancel/")
    resubmitted = operator.post(f"/admin/jobs/job/{waiting.id}/operate/resubmit/")

    assert cancelled.status_code == 302 and Job.objects.get(pk=waiting.id).status == "cancelled"
    copy = Job.objects.get(resubmitted_from=waiting)
    assert resubmitted["Location"].endswith(f"/admin/jobs/job/{copy.id}/change/")
    assert operator.get(f"/admin/jobs/job/{waiting.id}/operate/cancel/").status_code == 405


def test_the_overview_shows_counts_queues_workers_chart_and_links(operator):
    dead()
    submit(priority="high")
    services.queue_pause(queue="low")

    page = html(operator.get("/admin/jobs/job/overview/"))

    assert re.search(r'data-status="dead">\s*<span class="jq-count">1<', page)
    assert re.search(r'data-status="queued">\s*<span class="jq-count">1<', page)
    assert 'data-queue="low"' in page and ">paused<" in page
    assert 'id="throughput-chart"' in page and 'data-succeeded="0" data-failed="1"' in page
    assert page.count('class="jq-succeeded"') == 60
    assert "None is announcing itself." in page
    assert "http://127.0.0.1:5555" in page and "Grafana" not in page  # linked only when GRAFANA_URL is set
    with override_settings(GRAFANA_URL="http://127.0.0.1:3000"):
        assert html(operator.get("/admin/jobs/job/overview/")).count('href="http://127.0.0.1:3000"') == 2

    assert "/admin/jobs/job/overview/" in html(operator.get("/admin/"))


def test_pause_and_resume_buttons_change_the_queue_and_are_logged(operator, broker):
    job = submit(priority="low")

    operator.post("/admin/jobs/job/queues/low/pause/")
    assert QueueState.objects.get(name="low").paused and broker.llen("low") == 0
    operator.post("/admin/jobs/job/queues/low/resume/")

    state = QueueState.objects.get(name="low")
    assert not state.paused and state.changed_by == "admin:root"
    assert broker.llen("low") == 1 and Job.objects.get(pk=job.id).status == "queued"
    assert history(state) == ["Resumed from the admin", "Paused from the admin"]  # newest first
    assert operator.post("/admin/jobs/job/queues/low/explode/").status_code == 403


def test_staff_without_permissions_cannot_operate(db):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    job = submit(delay=60)

    assert client.post(f"/admin/jobs/job/{job.id}/operate/cancel/").status_code == 403
    assert client.post("/admin/jobs/job/queues/low/pause/").status_code == 403
    assert client.get("/admin/jobs/job/overview/").status_code == 403
    assert Job.objects.get(pk=job.id).status == "scheduled" and not QueueState.objects.exists()


def test_the_admin_and_models_pass_djangos_checks():
    call_command("check", "--fail-level", "WARNING")
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        ("/admin/jobs/job/", "retry_jobs"),
        ("/admin/jobs/deadjob/", "resubmit_jobs"),
        ("/admin/jobs/schedule/", "pause"),
        ("/admin/jobs/joblimit/", "delete_selected"),
        ("/admin/auth/user/", "delete_selected"),
    ],
)
def test_an_action_on_a_malformed_selection_is_a_400_naming_it(operator, changelist, action):
    operator.raise_request_exception = False
    broken = dead()

    answer = operator.post(changelist, {"action": action, "_selected_action": [str(broken.id)[:8], "1'--"]})

    assert answer.status_code == 400 and "_selected_action" in answer.content.decode()
    assert Job.objects.get(pk=broken.id).status == "dead"
