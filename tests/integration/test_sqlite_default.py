"""The embedded default: the whole job life on SQLite, which takes the ORM path of the services."""

import os
import subprocess
import sys
import textwrap

from tests.servers import ROOT

SCRIPT = textwrap.dedent(
    """
    from jobs import services
    from jobs.models import Job
    from tests.lifecycle import job_succeed

    job, _ = services.job_submit(type="test.sleep", payload={"ms": 1})
    claim = services.job_claim(job_id=job.id, worker="w@sqlite")
    assert services.job_claim(job_id=job.id, worker="other@sqlite") is None
    assert claim.payload == {"ms": 1} and claim.serial == 1
    assert job_succeed(job_id=job.id, serial=claim.serial, result={"ok": True})
    assert not job_succeed(job_id=job.id, serial=claim.serial, result={"ok": False})

    flaky, _ = services.job_submit(type="test.flaky", payload={}, max_retries=0)
    claim = services.job_claim(job_id=flaky.id, worker="w@sqlite")
    assert services.job_fail(job_id=flaky.id, serial=claim.serial, error_type="E", message="m") == "dead"
    assert services.job_retry(job_id=flaky.id).status == "queued"

    services.job_submit(type="noop", payload={})
    print(sorted(Job.objects.values_list("status", flat=True)))
    """
)


def on_sqlite(tmp_path, script: str) -> str:
    """Run `script` in `manage.py shell` on a fresh SQLite database; what it printed."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'jobqueue.sqlite3'}",
        "JOBQUEUE_VAR_DIR": str(tmp_path),
    }
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_job_lives_its_whole_life_on_the_embedded_sqlite_default(tmp_path, broker):
    assert on_sqlite(tmp_path, SCRIPT).strip().splitlines()[-1] == "['queued', 'queued', 'succeeded']"


ADMIN_FILTERS = textwrap.dedent(
    """
    from django.contrib.auth import get_user_model
    from django.test import Client

    from jobs import services

    services.job_submit(type="noop", payload={"x": 1})
    browser = Client(raise_request_exception=False)
    browser.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw"))
    for query in ("payload__contains=x", "created_at__year=99999999999", "status__exact=queued"):
        print(query, browser.get("/admin/jobs/job/?" + query).status_code)
    """
)


def test_admin_filters_sqlite_cannot_apply_answer_400_not_500(tmp_path, broker):
    answers = dict(line.split() for line in on_sqlite(tmp_path, ADMIN_FILTERS).strip().splitlines()[-3:])

    # SQLite has no JSON containment: Django raises NotSupportedError, the admin answers 400.
    assert answers == {
        "payload__contains=x": "400",
        "created_at__year=99999999999": "400",
        "status__exact=queued": "200",
    }
