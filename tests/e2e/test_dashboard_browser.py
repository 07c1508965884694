"""The live overview in a real browser (Debian's Chromium driven by Playwright).

The operator opens the overview once and leaves it: jobs submitted over the API meanwhile show
up in the counts, a long job shows in the running view with its progress, all without a
reload (a marker set in the page survives). Then the operator runs a scheduled job now.
Screenshots go to test-artifacts/screenshots/.
"""

import time

import pytest
import requests
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from jobs import services
from jobs.models import Job

from . import test_admin_browser
from .conftest import wait_until_terminal
from .test_admin_browser import log_in, refusals_of_the_content_security_policy, shot

launch_browser = test_admin_browser.launch_browser  # the fixture: Debian's Chromium, headless


def submit_over_the_api(web: str, token: str, body: dict) -> str:
    headers = {"Authorization": f"Token {token}"}
    response = requests.post(f"{web}/submit-job", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def count_of(page, status: str) -> int:
    return int(page.locator(f'.jq-tile[data-status="{status}"] .jq-count').inner_text())


@pytest.mark.timeout(900)
def test_the_overview_refreshes_itself_shows_running_progress_and_runs_a_scheduled_job_now(
    launch_browser, start_worker, start_mover, start_web
):
    call_command("collectstatic", "--noinput", verbosity=0)
    operator = get_user_model().objects.create_superuser("operator", "ops@example.com", "s3cret-pass")
    token = Token.objects.create(user=operator).key
    web = start_web({"JOB_ADMIN_REFRESH_SECONDS": "1"})
    start_worker("dash", concurrency=2)
    start_mover(env={"JOB_QUEUE_SAMPLE_SECONDS": "1"})
    scheduled, _ = services.job_submit(type="noop", payload={}, delay=3600)

    with launch_browser() as page:
        refused = refusals_of_the_content_security_policy(page)
        log_in(page, web)
        page.click("text=Open the overview")
        page.wait_for_url("**/admin/jobs/job/overview/")
        page.evaluate("() => { window.jqNotReloaded = true; }")
        assert count_of(page, "succeeded") == 0
        assert page.locator(f'#jq-scheduled tr[data-job="{scheduled.pk}"]').count() == 1
        stamp = page.locator("#jq-updated").inner_text()

        long_job = submit_over_the_api(web, token, {"type": "test.steps", "payload": {"steps": 60, "ms": 500}})
        the_running_view_shows_its_progress(page, long_job)
        shot(page, "dash-01-running")

        for _ in range(3):
            submit_over_the_api(web, token, {"type": "noop", "payload": {}})
        page.wait_for_function(
            "() => document.querySelector('.jq-tile[data-status=\"succeeded\"] .jq-count').textContent.trim() === '3'",
            timeout=60_000,
        )
        page.locator('#jq-types tr[data-type="noop"]').wait_for()
        assert page.locator("#jq-updated").inner_text() != stamp
        assert page.evaluate("() => window.jqNotReloaded === true"), "the page was reloaded"
        page.locator("#queue-depth-chart polyline").first.wait_for(state="attached", timeout=30_000)
        shot(page, "dash-02-refreshed")
        the_refresh_pauses_while_the_tab_is_hidden(page)

        page.locator(f'#jq-scheduled tr[data-job="{scheduled.pk}"] button.jq-run-now').click()
        page.wait_for_selector("text=Queued now 1 job(s).")
        assert page.locator(f'#jq-scheduled tr[data-job="{scheduled.pk}"]').count() == 0
        shot(page, "dash-03-run-now")
        assert refused == [], "the Content-Security-Policy refused parts of the pages"

    assert wait_until_terminal([scheduled.pk], timeout=60) == {str(scheduled.pk): "succeeded"}
    entry = LogEntry.objects.get(object_id=str(scheduled.pk))
    assert (entry.user.username, entry.get_change_message()) == ("operator", "Queued now from the admin")
    assert Job.objects.get(pk=long_job).status in ("running", "succeeded")


def the_running_view_shows_its_progress(page, job_id: str, timeout: float = 60) -> None:
    """Wait, without reloading, until the running view lists the job with some progress."""
    row = page.locator(f'#jq-running tr[data-job="{job_id}"]')
    row.wait_for(timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while row.locator(".jq-progress-pct").inner_text() in ("0%", ""):
        assert time.monotonic() < deadline, "the running view showed no progress"
        page.wait_for_timeout(300)
    assert "test.steps" in row.inner_text() and "dash@" in row.inner_text()
    assert "step " in row.locator(".jq-progress-message").inner_text()
    assert row.locator(f'a[href="/admin/jobs/job/{job_id}/change/"]').count() == 1


def set_hidden(page, hidden: bool) -> None:
    """What the browser reports when the tab goes to the background (or comes back)."""
    page.evaluate(
        "hidden => { Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def the_refresh_pauses_while_the_tab_is_hidden(page) -> None:
    set_hidden(page, True)
    page.wait_for_timeout(1500)  # a refresh already on its way may still land
    stamp = page.locator("#jq-updated").inner_text()
    page.wait_for_timeout(3000)  # three refresh periods
    assert page.locator("#jq-updated").inner_text() == stamp, "the page refreshed while hidden"
    set_hidden(page, False)
    page.wait_for_function(f"() => document.getElementById('jq-updated').textContent !== {stamp!r}")
