"""A handler that raises, returns garbage or leaks a secret never breaks the worker or the job record."""

import pytest

from jobs import services
from jobs.models import Job

from .conftest import wait_until_terminal

SECRET = "smtp-pa55word-do-not-show"


@pytest.mark.parametrize(
    "kind, error_type, says",
    [
        ("non_json", "InvalidResult", "not JSON"),
        ("huge", "InvalidResult", "the limit is"),
        ("unstorable", "InvalidResult", "cannot be stored"),
        ("leak", "RuntimeError", "[redacted]"),
        ("unprintable", "Unprintable", "unprintable"),
        ("exit", "SystemExit", "the handler exits"),
    ],
)
def test_misbehaving_handlers_leave_a_readable_reason_and_a_serving_worker(start_worker, kind, error_type, says):
    worker = start_worker("safety", env={"EMAIL_HOST_PASSWORD": SECRET})
    job, _ = services.job_submit(type="test.misbehave", payload={"kind": kind})

    wait_until_terminal([job.id], timeout=60)

    job.refresh_from_db()
    assert (job.status, job.error_type) == ("dead", error_type)
    assert says in job.error_message
    assert SECRET not in job.error_message + job.error_traceback
    follow_up, _ = services.job_submit(type="test.count", payload={})
    assert wait_until_terminal([follow_up.id], timeout=30) == {str(follow_up.id): "succeeded"}
    assert worker.alive()
    assert Job.objects.get(pk=follow_up.id).status == "succeeded"
