"""The operator's path through the admin in a real browser (Debian's Chromium driven by Playwright).

Log in, open the overview (the chart is drawn), filter to dead jobs, open one, read why it
died, edit its payload and retry it, and watch it succeed. Screenshots go to
test-artifacts/screenshots/.
"""

import time
from contextlib import contextmanager

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command

from jobs import services
from jobs.models import Job
from tests.servers import ARTIFACTS, require_binary, unavailable

from .conftest import wait_until_terminal

SHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def launch_browser():
    """Opens a headless Chromium page; Django's database is off limits inside (Playwright runs a loop)."""
    executable = require_binary("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    SHOTS.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def launch():
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            try:
                yield page
            finally:
                browser.close()

    return launch


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def a_dead_job_and_some_history() -> Job:
    for _ in range(8):
        services.job_submit(type="noop", payload={})
    for n in range(2):
        services.job_submit(type="test.fail", payload={"fail": True, "n": n}, max_retries=0)
    job, _ = services.job_submit(type="test.fail", payload={"fail": True, "to": "ops@example.com"}, max_retries=0)
    return job


@pytest.mark.timeout(900)
def test_an_operator_finds_a_dead_job_fixes_its_payload_and_sees_it_succeed(
    launch_browser, start_worker, start_mover, start_web
):
    call_command("collectstatic", "--noinput", verbosity=0)  # into this run's STATIC_ROOT, served by WhiteNoise
    get_user_model().objects.create_superuser("operator", "ops@example.com", "s3cret-pass")
    web = start_web()
    start_worker("browser", concurrency=2)
    start_mover()
    job = a_dead_job_and_some_history()
    wait_until_terminal(Job.objects.values_list("pk", flat=True), timeout=60)

    with launch_browser() as page:
        refused = refusals_of_the_content_security_policy(page)
        log_in(page, web)
        check_the_overview(page)
        open_the_dead_job(page, str(job.id))
        edit_the_payload_and_retry(page)
        wait_for_success(page)
        check_the_api_docs(page, web)
        assert refused == [], "the Content-Security-Policy refused parts of the pages"
        an_injected_inline_script_does_not_run(page, refused)

    job.refresh_from_db()
    assert (job.status, job.result) == ("succeeded", {"fixed": True})
    assert job.payload == {"fail": False, "to": "ops@example.com"}
    assert [attempt.outcome for attempt in job.history.all()] == ["failed", "succeeded"]
    entry = LogEntry.objects.get(object_id=str(job.id))
    assert entry.user.username == "operator"
    assert entry.get_change_message() == "Retried from the admin with an edited payload"


def refusals_of_the_content_security_policy(page) -> list[str]:
    """What the browser refused under the pages' policy, as it reports it on the console; and
    every page the browser loads must carry the policy."""
    refused: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))

    def check_header(response) -> None:
        if response.request.resource_type == "document" and "content-security-policy" not in response.headers:
            refused.append(f"no Content-Security-Policy header on {response.url}")

    page.on("response", check_header)
    return refused


def an_injected_inline_script_does_not_run(page, refused: list[str]) -> None:
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.inlineRan = true';"
        " document.head.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.inlineRan === undefined"), "an inline script ran"
    assert len(refused) == 1 and "script" in refused[0], refused


def log_in(page, web: str) -> None:
    page.goto(f"{web}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Open the overview")
    header = page.locator("#header").evaluate("el => getComputedStyle(el).backgroundColor")
    assert header not in ("", "rgba(0, 0, 0, 0)"), "the admin's CSS was not served"
    shot(page, "01-admin-index")


def check_the_overview(page) -> None:
    """Counts, queues, workers, and the chart drawn with bars."""
    page.click("text=Open the overview")
    page.wait_for_url("**/admin/jobs/job/overview/")
    chart = page.locator("svg#throughput-chart")
    chart.wait_for()
    assert chart.get_attribute("data-succeeded") == "8" and chart.get_attribute("data-failed") == "3"
    assert chart.bounding_box()["width"] > 600
    drawn = page.locator("rect.jq-succeeded").evaluate_all("bars => bars.filter(b => b.getBBox().height > 0).length")
    assert drawn >= 1
    assert page.locator('.jq-tile[data-status="dead"] .jq-count').inner_text() == "3"
    assert "browser@" in page.locator("#jq-workers").inner_text()
    shot(page, "02-overview")


def open_the_dead_job(page, job_id: str) -> None:
    """Filter the job list to dead jobs, open the one to fix and read why it died."""
    page.click("nav.jq-nav >> text=Dead letters")
    page.wait_for_url("**/admin/jobs/deadjob/")
    assert page.locator("#result_list tbody tr").count() == 3
    assert page.locator("#result_list >> text=Edit payload and retry").count() == 3
    assert page.locator("#result_list td.field-short_reason").first.inner_text().startswith("retries exhausted")
    shot(page, "03-dead-letter-queue")
    page.click("nav.jq-nav >> text=Jobs")
    page.wait_for_url("**/admin/jobs/job/")
    page.locator("#changelist-filter").get_by_role("link", name="Dead", exact=True).click()
    page.wait_for_url("**status__exact=dead**")
    assert page.locator("#result_list tbody tr").count() == 3
    shot(page, "04-dead-jobs-filtered")
    page.click(f"#result_list >> text={job_id[:8]}")
    page.wait_for_url(f"**/admin/jobs/job/{job_id}/change/**")
    assert "retries exhausted" in page.locator(".field-reason .readonly").inner_text()
    assert "failing as asked" in page.locator(".field-error_message_pre").inner_text()
    assert "Traceback" in page.locator(".field-traceback_pre").inner_text()
    shot(page, "05-dead-job")


def edit_the_payload_and_retry(page) -> None:
    page.click("text=Edit payload and retry")
    page.wait_for_url("**/edit-retry/**")
    page.fill("#id_payload", '{"fail": false, "to": "ops@example.com"}')
    shot(page, "06-edit-payload")
    page.click("input[value='Save payload and retry']")
    page.wait_for_selector("text=Retried with the edited payload.")


def wait_for_success(page, timeout: float = 60) -> None:
    """Reload the job page until it shows the job succeeded."""
    deadline = time.monotonic() + timeout
    while "succeeded" not in page.locator(".field-status_badge .readonly").inner_text():
        assert time.monotonic() < deadline, f"the retried job did not succeed in {timeout} s"
        time.sleep(0.5)
        page.reload()
    assert '"fixed": true' in page.locator(".field-result_pretty").inner_text()
    shot(page, "07-succeeded")


def check_the_api_docs(page, web: str) -> None:
    """Swagger UI renders every operation from our own static files (no CDN is reachable here)."""
    page.goto(f"{web}/api/docs/")
    page.wait_for_selector(".opblock-summary-path")
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/submit-job", "/job-status/{job_id}", "/api/jobs/{job_id}/retry/", "/api/queues/{name}/pause/"} <= {
        path.replace("\u200b", "") for path in paths
    }
    shot(page, "08-api-docs")
