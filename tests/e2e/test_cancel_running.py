"""Cancel a running job from the owner API, the CLI and the admin (real Chromium), with the web, two
worker nodes and the mover as real processes. Its handler (test.ticker, which appends the time to a
file every 0.1 s) stops within JOB_CANCEL_GRACE + 2 s of the answer: told through ctx.check(), or,
a handler that never checks, by its pool process being killed after the grace. The job is
`cancelled`, its attempt names who cancelled it, it never runs again, and a second cancel is a 409.
"""

import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from jobs import services
from jobs.models import Job

from .conftest import jobs_cli
from .test_admin_browser import launch_browser, log_in, shot  # noqa: F401 - launch_browser is a fixture

GRACE = 3.0
LEASE = 4
ENV = {
    "JOB_CANCEL_GRACE": str(GRACE),
    # Far longer than the cancel's: a cancel taken for a lost lease (a renewal refused between the
    # cancel and the node's next look at the database) would be ended only after this, and fail.
    "JOB_FENCE_GRACE": "30",
    "JOB_FENCE_CHECK_SECONDS": "0.5",
    "JOB_LEASE_SECONDS": str(LEASE),
    "JOB_LEASE_RENEW_SECONDS": "1",
}
QUIET = 1.0  # no tick for this long: the handler stopped


@pytest.fixture(scope="module")
def cluster(module_starter):
    """The web app, two worker nodes (one process each) and the mover, with a short grace and lease."""
    call_command("collectstatic", "--noinput", verbosity=0)  # the admin's CSS and confirm.js, for Chromium
    web = module_starter.web(env=ENV)
    for name in ("north", "south"):
        module_starter.worker(name, concurrency=1, env=ENV)
    module_starter.mover(env=ENV)
    return web


def ticking(tmp_path: Path, *, owner=None, check: bool = True) -> tuple[Job, Path]:
    """A test.ticker job, once its handler has ticked a few times on one of the nodes."""
    ticks = tmp_path / "ticks"
    job, _ = services.job_submit(
        type="test.ticker", payload={"seconds": 60, "check": check, "file": str(ticks)}, owner=owner
    )
    deadline = time.monotonic() + 30
    while len(_ticks(ticks)) < 5:
        assert time.monotonic() < deadline, f"job {job.pk} did not start ticking: {Job.objects.get(pk=job.pk).status}"
        time.sleep(0.1)
    job.refresh_from_db()
    assert job.status == "running", job.status
    return job, ticks


def _ticks(path: Path) -> list[float]:
    try:
        return [float(line) for line in path.read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


def assert_stopped_and_never_again(
    job: Job, ticks: Path, *, answered: float, by: str, surface: str, killed: bool = False
) -> None:
    """The handler stops ticking in time (`killed`: not before the grace, as only the end of its
    process stops it); the job stays cancelled, its only attempt naming `by`."""
    deadline = answered + GRACE + 2 + QUIET
    while True:
        last = _ticks(ticks)[-1]
        if time.time() - last >= QUIET:
            break
        assert time.time() < deadline, f"{surface}: still ticking {time.time() - answered:.1f} s after the cancel"
        time.sleep(0.1)
    stopped = last - answered
    node = job.history.get().worker
    print(f"\n{surface}: the handler on {node} ticked last {stopped:.2f} s after the cancel answered")
    assert stopped <= GRACE + 2
    if killed:
        assert stopped >= GRACE - 0.5, f"{surface}: the handler stopped before its grace ran out"

    time.sleep(max(0.0, answered + LEASE + 2 - time.time()))  # a lease and more: the mover would have moved it
    job.refresh_from_db()
    assert (job.status, job.reason) == ("cancelled", f"cancelled by {by}")
    attempts = list(job.history.values_list("outcome", "error_message"))
    assert attempts == [("cancelled", f"cancelled by {by}")], attempts
    assert _ticks(ticks)[-1] == last, f"{surface}: the handler ticked again"


def test_the_owner_cancels_its_running_job_through_the_api(cluster, make_user, tmp_path):
    alice, token = make_user("alice")
    job, ticks = ticking(tmp_path, owner=alice)
    auth = {"Authorization": f"Token {token}"}

    answer = requests.post(f"{cluster}/jobs/{job.pk}/cancel", headers=auth, timeout=10)
    answered = time.time()

    assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
    assert_stopped_and_never_again(job, ticks, answered=answered, by="alice", surface="API")
    again = requests.post(f"{cluster}/jobs/{job.pk}/cancel", headers=auth, timeout=10)
    assert again.status_code == 409 and "finished job cannot be cancelled" in again.json()["detail"]


def test_an_operator_cancels_a_running_job_with_the_cli(cluster, make_user, tmp_path):
    make_user("carol", staff=True)
    job, ticks = ticking(tmp_path)

    done = jobs_cli("--as", "carol", "cancel", str(job.pk))
    answered = time.time()

    assert done.returncode == 0, done.stderr
    assert_stopped_and_never_again(job, ticks, answered=answered, by="carol", surface="CLI")
    again = jobs_cli("--as", "carol", "cancel", str(job.pk))
    assert again.returncode == 1 and "a finished job cannot be cancelled" in again.stderr, again.stderr


def test_an_operator_cancels_a_handler_that_never_checks_from_the_admin(cluster, launch_browser, tmp_path):  # noqa: F811
    operator = get_user_model().objects.create_superuser("operator", "ops@example.com", "s3cret-pass")
    token = Token.objects.create(user=operator).key
    job, ticks = ticking(tmp_path, check=False)  # only killing its process stops it

    with launch_browser() as page:
        log_in(page, cluster)
        page.goto(f"{cluster}/admin/jobs/job/overview/")
        row = page.locator(f'#jq-running tr[data-job="{job.pk}"]')
        assert row.locator("button.jq-cancel-running").count() == 1
        page.goto(f"{cluster}/admin/jobs/job/{job.pk}/change/")
        asked: list[str] = []
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        answered = time.time()  # measured from the click: the answer comes after it
        page.click("form.jq-cancel button")
        page.wait_for_selector("text=Cancelled 1 job(s).")
        assert asked and asked[0].startswith("Cancel this running job?"), asked
        assert page.locator(".field-status_badge .readonly").inner_text() == "cancelled"
        assert page.locator("form.jq-cancel").count() == 0  # nothing left to cancel
        shot(page, "cancelled-running-job")

    assert_stopped_and_never_again(job, ticks, answered=answered, by="operator", surface="admin", killed=True)
    again = requests.post(
        f"{cluster}/api/jobs/{job.pk}/cancel/", headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert again.status_code == 409, again.text
