"""An operator's recurring job in a real browser: create a schedule in the admin (a bad cron
expression shown on its field first), watch the mover fire it and a worker run its jobs, open a
run's job, pause the schedule. Screenshots go to test-artifacts/screenshots/."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from jobs.models import Schedule, ScheduleRun

from .test_admin_browser import launch_browser, log_in, refusals_of_the_content_security_policy, shot  # noqa: F401


@pytest.mark.timeout(600)
def test_an_operator_creates_a_schedule_sees_its_runs_and_pauses_it(
    launch_browser,  # noqa: F811
    start_worker,
    start_mover,
    start_web,
):
    call_command("collectstatic", "--noinput", verbosity=0)
    get_user_model().objects.create_superuser("operator", "ops@example.com", "s3cret-pass")
    web = start_web()
    start_worker("browser", concurrency=2)
    start_mover()

    with launch_browser() as page:
        refused = refusals_of_the_content_security_policy(page)
        log_in(page, web)
        create_a_schedule(page)
        job_id = wait_for_a_run_whose_job_succeeded(page)
        open_its_job(page, job_id)
        pause_it(page)
        assert refused == [], "the Content-Security-Policy refused parts of the pages"

    schedule = Schedule.objects.get()
    assert (schedule.name, schedule.interval_seconds, schedule.enabled) == ("heartbeat", 2, False)
    assert ScheduleRun.objects.filter(schedule=schedule, outcome="fired").count() >= 1


def create_a_schedule(page) -> None:
    page.click("nav.jq-nav >> text=Schedules")
    page.wait_for_url("**/admin/jobs/schedule/")
    page.click("a.addlink")
    page.wait_for_url("**/admin/jobs/schedule/add/")
    page.fill("#id_name", "heartbeat")
    page.select_option("#id_job_type", "noop")
    page.fill("#id_cron", "61 * * * *")
    page.click("input[name=_save]")
    error = page.locator("#id_cron_error")
    error.wait_for()
    assert "minute" in error.inner_text() or "61" in error.inner_text(), error.inner_text()
    shot(page, "schedules-01-bad-cron")
    page.fill("#id_cron", "")
    page.fill("#id_interval_seconds", "2")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/jobs/schedule/")
    row = page.locator("#result_list tbody tr", has_text="heartbeat")
    assert "2s (UTC)" in row.inner_text()
    shot(page, "schedules-02-list")


def wait_for_a_run_whose_job_succeeded(page, timeout: float = 60) -> str:
    """Reload the schedule's page until its runs list a fired tick whose job succeeded."""
    page.click("#result_list >> text=heartbeat")
    page.wait_for_url("**/admin/jobs/schedule/*/change/")
    deadline = time.monotonic() + timeout
    succeeded = page.locator("table.jq-runs tbody tr", has_text="succeeded")
    while succeeded.count() == 0:
        assert time.monotonic() < deadline, f"no run of the schedule succeeded in {timeout} s"
        time.sleep(1)
        page.reload()
    shot(page, "schedules-03-runs")
    link = succeeded.first.locator("a")
    return link.get_attribute("href").split("/")[-3]


def open_its_job(page, job_id: str) -> None:
    schedule_page = page.url
    page.click(f"table.jq-runs >> text={job_id[:8]}")
    page.wait_for_url(f"**/admin/jobs/job/{job_id}/change/")
    assert "succeeded" in page.locator(".field-status_badge .readonly").inner_text()
    assert page.locator(".field-type .readonly").inner_text() == "noop"
    page.goto(schedule_page)


def pause_it(page) -> None:
    page.click(".object-tools >> text=Pause")
    page.wait_for_selector("text=Paused: heartbeat.")
    assert page.locator(".object-tools >> text=Resume").count() == 1
    shot(page, "schedules-04-paused")
