"""The live overview's reads and writes: running and scheduled jobs, run now (service, admin, API),
the per-type last hour, the mover's queue samples, and the fragments the page polls for.

Runs on PostgreSQL here and again on SQLite (`make test-sqlite`)."""

import json
from datetime import timedelta

import django
import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobAttempt, QueueSample
from jobs.rules.exceptions import InvalidTransition, JobNotFound
from jobs.services import selectors
from jobs.services.mover import Mover
from tests.api_coverage import covers

OVERVIEW = "/admin/jobs/job/overview/"
LIVE = "/admin/jobs/job/overview/live/"


def submit(**overrides) -> Job:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def finished_attempt(job_type: str, seconds: float, *, ok: bool = True, ago: float = 60) -> Job:
    """A job whose one attempt took `seconds` and ended `ago` seconds ago, succeeded or failed (and dead)."""
    job = submit(type=job_type, max_retries=0)
    claim = services.job_claim(job_id=job.pk, worker="w1@host")
    if ok:
        services.jobs_succeed([services.Success(str(job.pk), claim.serial, None, timezone.now())])
    else:
        services.job_fail(job_id=job.pk, serial=claim.serial, error_type="E", message="boom")
    end = timezone.now() - timedelta(seconds=ago)
    JobAttempt.objects.filter(job=job).update(started_at=end - timedelta(seconds=seconds), finished_at=end)
    Job.objects.filter(pk=job.pk).update(finished_at=end)
    return job


def history(job: Job) -> list[str]:
    return [entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(job.pk))]


# Run now: the service.


def test_run_now_queues_a_scheduled_job_at_once_and_publishes_it(broker):
    job = submit(delay=3600, priority="low")
    assert broker.llen("low") == 0

    ran = services.job_run_now(job_id=job.pk)

    assert ran.status == "queued" and ran.run_at <= timezone.now()
    assert broker.llen("low") == 1
    assert selectors.scheduled_count() == 0


def test_run_now_refuses_a_job_that_is_not_waiting_and_an_unknown_id(broker):
    queued = submit()

    with pytest.raises(InvalidTransition, match="is queued; only scheduled or retrying jobs can be run now"):
        services.job_run_now(job_id=queued.pk)
    with pytest.raises(JobNotFound):
        services.job_run_now(job_id="not-a-uuid")
    assert broker.llen("medium") == 1  # the queued job's own message, nothing more


# Run now: the admin.


def test_the_overview_lists_scheduled_jobs_soonest_first_and_runs_one_now(operator, broker):
    later = submit(delay=3600, type="test.sleep")
    sooner = submit(delay=600)

    page = operator.get(OVERVIEW).content.decode()
    assert page.index(f'data-job="{sooner.pk}"') < page.index(f'data-job="{later.pk}"')
    assert f"/admin/jobs/job/{later.pk}/operate/run_now/" in page

    response = operator.post(f"/admin/jobs/job/{later.pk}/operate/run_now/", {"next": "overview"})

    assert response.status_code == 302 and response["Location"] == OVERVIEW
    assert Job.objects.get(pk=later.pk).status == "queued" and broker.llen("medium") == 1
    assert history(later) == ["Queued now from the admin"]
    assert f'data-job="{later.pk}"' not in operator.get(OVERVIEW).content.decode()


def test_run_now_from_the_admin_needs_the_change_permission_and_a_post(make_user):
    viewer, _ = make_user("viewer", staff=True, perms=("view_job",))
    client = Client()
    client.force_login(viewer)
    job = submit(delay=3600)

    assert client.post(f"/admin/jobs/job/{job.pk}/operate/run_now/").status_code == 403
    assert "Run now" not in client.get(OVERVIEW).content.decode()  # no button without the permission
    assert client.get(f"/admin/jobs/job/{job.pk}/operate/run_now/").status_code == 405
    assert Job.objects.get(pk=job.pk).status == "scheduled"


def test_run_now_of_a_job_already_queued_is_refused_with_a_message(operator):
    job = submit()

    response = operator.post(f"/admin/jobs/job/{job.pk}/operate/run_now/", follow=True)

    assert "Not queued now: job" in response.content.decode() and history(job) == []


# Run now: the API.


@covers("POST", "/api/jobs/{job_id}/run-now/")
def test_run_now_over_the_api_queues_the_job_and_records_who(client_for, broker):
    staff = client_for("staff", staff=True)
    job = submit(delay=3600)

    response = staff.post(f"/api/jobs/{job.pk}/run-now/")

    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert broker.llen("medium") == 1
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert (entry.user.username, entry.get_change_message()) == ("staff", "Queued now through the API")


@covers("POST", "/api/jobs/{job_id}/run-now/")
def test_run_now_over_the_api_answers_409_404_and_403(client_for):
    staff = client_for("staff", staff=True)
    viewer = client_for("viewer", staff=True, perms=("view_job",))
    queued = submit()
    waiting = submit(delay=3600)

    conflict = staff.post(f"/api/jobs/{queued.pk}/run-now/")
    missing = staff.post("/api/jobs/00000000-0000-0000-0000-000000000000/run-now/")
    denied = viewer.post(f"/api/jobs/{waiting.pk}/run-now/")

    assert conflict.status_code == 409 and "only scheduled or retrying" in json.dumps(conflict.json())
    assert missing.status_code == 404
    assert denied.status_code == 403 and Job.objects.get(pk=waiting.pk).status == "scheduled"


# Running jobs.


def test_running_jobs_show_worker_elapsed_seconds_and_progress(operator):
    job = submit(type="test.sleep")
    claim = services.job_claim(job_id=job.pk, worker="w7@host")
    services.job_progress(job_id=job.pk, serial=claim.serial, percent=40, message="step 2 of 5")
    JobAttempt.objects.filter(job=job).update(started_at=timezone.now() - timedelta(seconds=90))
    submit()  # queued, not running

    (running,) = selectors.running_jobs()
    page = operator.get(OVERVIEW).content.decode()

    assert (running["id"], running["worker"], running["progress"]) == (job.pk, "w7@host", 40)
    assert 90 <= running["elapsed_seconds"] < 120
    row = page[page.index(f'<tr data-job="{job.pk}"') :].split("</tr>")[0]
    assert f"/admin/jobs/job/{job.pk}/change/" in row and "w7@host" in row and "test.sleep" in row
    assert "width:40%" in row and "40%" in row and "step 2 of 5" in row


# The last hour per type.


def test_type_stats_count_outcomes_and_give_duration_percentiles():
    for seconds in (1.0, 2.0, 3.0, 4.0):
        finished_attempt("test.sleep", seconds)
    finished_attempt("test.fail", 10.0, ok=False)
    finished_attempt("test.fail", 2.0)
    finished_attempt("noop", 1.0, ago=2 * 3600)  # outside the hour

    stats = {row["type"]: row for row in selectors.type_stats(minutes=60)}

    assert set(stats) == {"test.sleep", "test.fail"}
    sleep, fail = stats["test.sleep"], stats["test.fail"]
    assert (sleep["succeeded"], sleep["failed"], sleep["dead"], sleep["failure_rate"]) == (4, 0, 0, 0.0)
    assert sleep["p50_seconds"] == pytest.approx(2.5, abs=0.01)
    assert sleep["p95_seconds"] == pytest.approx(3.85, abs=0.01)
    assert sleep["per_minute"] == pytest.approx(4 / 60)
    assert (fail["succeeded"], fail["failed"], fail["dead"], fail["failure_rate"]) == (1, 1, 1, 0.5)
    assert fail["p50_seconds"] == pytest.approx(6.0, abs=0.01)


def test_the_overview_shows_the_per_type_table_and_succeeded_apart_from_failed(operator):
    finished_attempt("test.sleep", 1.0)
    finished_attempt("test.sleep", 3.0, ok=False)

    page = operator.get(OVERVIEW).content.decode()

    row = page[page.index('<tr data-type="test.sleep"') :].split("</tr>")[0]
    assert 'class="jq-type-succeeded">1<' in row and 'class="jq-type-failed">1<' in row
    assert "50.0%" in row and "2.00 s" in row
    assert 'data-succeeded="1" data-failed="1"' in page and "succeeded (1)" in page


# Queue samples.


@override_settings(JOB_QUEUE_SAMPLE_SECONDS=15)
def test_the_sampler_writes_each_queue_once_per_period_and_prunes_old_samples(broker):
    services.queue_pause(queue="low")
    submit(priority="low")
    old = timezone.now() - timedelta(hours=3)
    QueueSample.objects.create(queue="high", at=old, queued=9)

    written = services.queues_sample()
    services.queues_sample()  # a second mover in the same period writes nothing more

    samples = {s.queue: s for s in QueueSample.objects.all()}
    assert written == 3 and QueueSample.objects.count() == 3 and set(samples) == {"high", "medium", "low"}
    assert samples["low"].paused and samples["low"].queued == 1 and not samples["high"].paused
    assert samples["low"].at.timestamp() % 15 == 0


def test_the_mover_takes_a_sample_on_its_first_round(broker):
    Mover(interval=0.1).tick()

    assert sorted(QueueSample.objects.values_list("queue", flat=True)) == ["high", "low", "medium"]


def test_the_queue_charts_draw_samples_and_leave_a_paused_queues_latency_out(operator):
    now = timezone.now()
    for minutes_ago, latency in ((30, 2.0), (20, 4.0), (10, 6.0)):
        at = now - timedelta(minutes=minutes_ago)
        QueueSample.objects.create(queue="high", at=at, queued=3, latency_seconds=latency)
        QueueSample.objects.create(queue="low", at=at, queued=5, latency_seconds=600.0, paused=True)

    history = selectors.queue_history(minutes=60)
    page = operator.get(OVERVIEW).content.decode()

    assert [s.latency_seconds for s in history["high"]] == [2.0, 4.0, 6.0] and history["medium"] == []
    depth = page[page.index('id="queue-depth-chart"') :].split("</svg>")[0]
    latency = page[page.index('id="queue-latency-chart"') :].split("</svg>")[0]
    assert 'data-queue="high"' in depth and 'data-queue="low"' in depth
    assert 'data-queue="high"' in latency and 'data-queue="low"' not in latency
    assert ">10<" in latency  # the axis tops at the high queue's 6 s, not the paused queue's 600 s


# The queues table, times and breadcrumbs.


def test_every_queue_is_listed_and_a_paused_queues_latency_is_not_an_alarm(operator, broker):
    services.queue_pause(queue="low")
    stale = submit(priority="low")
    Job.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(minutes=10))

    page = operator.get(OVERVIEW).content.decode()

    for queue in ("high", "medium", "low"):
        assert f'<tr data-queue="{queue}">' in page
    low = page[page.index('<tr data-queue="low">') :].split("</tr>")[0]
    assert ">paused</span></td>" in low and 'class="jq-late"' not in low


def test_a_queue_waiting_long_while_running_shows_a_warning(operator, broker):
    stale = submit(priority="high")
    Job.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(minutes=10))

    page = operator.get(OVERVIEW).content.decode()

    high = page[page.index('<tr data-queue="high">') :].split("</tr>")[0]
    assert 'class="jq-late"' in high


def test_job_times_show_seconds_and_breadcrumbs_name_the_app(operator):
    job = submit(delay=3600)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now().replace(microsecond=0, second=7))
    job.refresh_from_db()
    stamp = timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M:07")

    detail = operator.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    listing = operator.get("/admin/jobs/job/").content.decode()

    assert stamp in detail and stamp in listing
    assert "Run now" in detail
    overview = operator.get(OVERVIEW).content.decode()

    assert "Job queue</a>" in listing and "Jobs</a>\n&rsaquo; Jobs" not in listing
    assert f'<a href="{reverse("admin:app_list", args=["jobs"])}">Job queue</a>' in overview
    if django.VERSION >= (6, 1):  # the admin's breadcrumbs became a list
        assert '<li aria-current="page">Jobs</li>' in listing and '<li aria-current="page">Overview</li>' in overview
    else:
        assert "&rsaquo; Jobs" in listing and "&rsaquo; Overview</div>" in overview


# The page's refresh.


def test_the_live_endpoint_renders_every_section_with_fresh_counts(operator, broker):
    first = operator.get(LIVE).json()
    submit()
    second = operator.get(LIVE)

    assert second["Content-Type"].startswith("application/json") and "no-cache" in second["Cache-Control"]
    fragments = second.json()["fragments"]
    assert set(fragments) == {
        "dead_letter",
        "tiles",
        "queues",
        "limits",
        "workers",
        "running",
        "scheduled",
        "types",
        "throughput",
        "queue_charts",
    }
    assert 'data-status="queued">\n  <span class="jq-count">0<' in first["fragments"]["tiles"]
    assert 'data-status="queued">\n  <span class="jq-count">1<' in fragments["tiles"]
    assert len(second.json()["updated"]) == 8  # hh:mm:ss


@override_settings(JOB_ADMIN_REFRESH_SECONDS=7)
def test_the_page_carries_its_refresh_url_and_period_and_loads_the_script(operator):

    page = operator.get(OVERVIEW).content.decode()

    assert f'data-refresh-url="{LIVE}"' in page and 'data-refresh-seconds="7"' in page
    assert 'src="/static/jobs/overview.js"' in page and 'id="jq-updated"' in page
    for section in ("tiles", "queues", "workers", "running", "scheduled", "types"):
        assert f'data-fragment="{section}"' in page


def test_the_live_endpoint_needs_the_view_permission(make_user):
    bare, _ = make_user("bare", staff=True, perms=())
    client = Client()
    client.force_login(bare)

    assert Client().get(LIVE).status_code == 302
    assert client.get(LIVE).status_code == 403
