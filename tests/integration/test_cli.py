"""`manage.py jobs ...` against real PostgreSQL and Redis: every subcommand, and bad input."""

import io
import json
import logging
import os
import subprocess
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from jobs import services
from jobs.models import Job, QueueState
from tests import servers as test_services

MISSING = "00000000-0000-4000-8000-000000000000"


def jobs(*args: str) -> str:
    """Run the command in this process; returns what it printed."""
    out = io.StringIO()
    call_command("jobs", *args, stdout=out)
    return out.getvalue()


def jobs_json(*args: str):
    return json.loads(jobs("--json", *args))


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command as an operator's script would."""
    command = [test_services.python(), "manage.py", "jobs", *args]
    return subprocess.run(
        command,
        cwd=test_services.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def submit(**overrides) -> Job:
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def dead(message: str = "boom") -> Job:
    job = submit(type="test.fail", payload={"fail": True}, max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="RuntimeError", message=message, traceback="TB")
    return job


def test_submit_prints_the_new_job(broker):
    out = jobs_json("submit", "email_welcome", "--payload", '{"email": "a@example.com"}', "--priority", "high")

    assert (out["type"], out["status"], out["priority"]) == ("email_welcome", "queued", "high")
    assert Job.objects.get(pk=out["id"]).payload == {"email": "a@example.com"}
    assert broker.llen("high") == 1
    later = jobs_json("submit", "noop", "--delay", "60", "--max-retries", "0", "--idempotency-key", "k1")
    assert (later["status"], later["max_retries"]) == ("scheduled", 0)
    assert jobs_json("submit", "noop", "--idempotency-key", "k1")["id"] == later["id"]


def test_status_shows_error_history_and_traceback():
    job = dead(message="SMTP refused")

    text = jobs("status", str(job.id))
    data = jobs_json("status", str(job.id))

    assert "RuntimeError: SMTP refused" in text and "retries exhausted" in text
    assert "ATTEMPT" in text and "failed" in text and text.rstrip().endswith("TB")
    assert data["id"] == str(job.id) and data["history"][0]["outcome"] == "failed"


def test_list_filters_and_prints_a_table():
    old = submit(type="test.sleep", priority="low", payload={"customer": "ACME"})
    Job.objects.filter(pk=old.id).update(created_at=timezone.now() - timedelta(days=3))
    broken = dead()
    submit()

    table = jobs("list", "--status", "dead")
    assert table.splitlines()[0].split() == ["ID", "TYPE", "STATUS", "QUEUE", "ATTEMPTS", "PROGRESS", "AGE", "REASON"]
    assert len(table.splitlines()) == 2 and str(broken.id) in table and "retries exhausted" in table

    def ids(*args: str) -> list[str]:
        return [row["id"] for row in jobs_json("list", *args)]

    assert ids("--type", "test.sleep") == ids("--priority", "low") == ids("--search", "acme") == [str(old.id)]
    assert str(old.id) not in ids("--created-after", (timezone.now() - timedelta(days=1)).isoformat())
    assert ids("--created-before", (timezone.now() - timedelta(days=1)).isoformat()) == [str(old.id)]
    assert len(ids("--limit", "2")) == 2
    assert ids("--json", "--status", "cancelled") == []  # --json after the subcommand works too


def test_retry_one_with_a_corrected_payload_and_all_dead(broker):
    job = dead()
    others = [dead(), dead()]

    retried = jobs_json("retry", str(job.id), "--payload", '{"fail": false}')
    assert (retried["status"], retried["payload"]) == ("queued", {"fail": False})
    assert jobs_json("retry", "--all-dead") == {"retried": 2}
    assert set(Job.objects.filter(pk__in=[o.id for o in others]).values_list("status", flat=True)) == {"queued"}
    assert broker.llen("dead_letter") == 0


def test_a_retried_job_shows_no_error_of_the_attempts_before(broker):
    job = dead(message="SMTP refused")

    text = jobs("retry", str(job.id))

    assert "status: queued" in text and "failed" in text  # the attempt history keeps the failure
    assert "SMTP refused" not in text and "TB" not in text.split()
    assert jobs_json("status", str(job.id))["error"] is None


def test_routine_actions_log_no_warning(broker, caplog):
    """A warning reaches a shell's stderr; pausing or setting a limit is no cause for one."""
    actions = (("pause", "low"), ("resume", "low"), ("limits", "set", "noop", "--concurrency", "2"))
    for args in (*actions, ("limits", "clear", "noop")):
        jobs(*args)

    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert not cli("pause", "medium").stderr


def test_resubmit_cancel_and_delete():
    job = dead()

    copy = jobs_json("resubmit", str(job.id))
    assert copy["id"] != str(job.id) and copy["resubmitted_from"] == str(job.id)
    waiting = submit(delay=60)
    assert jobs_json("run-now", str(waiting.id))["status"] == "queued"
    assert jobs_json("cancel", str(waiting.id))["status"] == "cancelled"
    assert jobs("delete", str(job.id)).strip() == f"deleted {job.id}"
    assert not Job.objects.filter(pk=job.id).exists()


def test_purge_all_or_only_old_dead_jobs():
    old, recent = dead(), dead()
    Job.objects.filter(pk=old.id).update(finished_at=timezone.now() - timedelta(days=40))

    assert jobs_json("purge", "--older-than-days", "30") == {"purged": 1}
    assert jobs("purge").strip() == "purged 1 dead jobs"
    assert not Job.objects.filter(pk__in=[old.id, recent.id]).exists()


def test_pause_and_resume_a_queue(broker):
    submit(priority="low")

    paused = jobs_json("pause", "low")
    assert (paused["paused"], paused["changed_by"], paused["depth"], paused["queued"]) == (True, "cli", 0, 1)
    assert "paused" in jobs("pause", "low")
    resumed = jobs_json("resume", "low")
    assert (resumed["paused"], resumed["published"], resumed["depth"]) == (False, 1, 1)
    assert QueueState.objects.get(name="low").paused is False


def test_stats_prints_statuses_queues_workers_and_the_last_hour():
    submit()
    dead()
    services.queue_pause(queue="high")

    text = jobs("stats")
    data = jobs_json("stats")

    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["queued"] == ["1"] and rows["dead"] == ["1"] and rows["succeeded"] == ["0"]
    assert rows["high"] == ["paused", "0", "0", "0", "0s"]
    assert rows["medium"][:4] == ["running", "2", "1", "0"]  # no worker took the dead job's message
    assert "workers online: 0" in text and "last hour: 1 attempts finished, 0 succeeded, 1 failed" in text
    assert data["statuses"]["dead"] == 1 and data["workers"] == [] and data["dead_letter"] == 1


BAD_INPUT = [
    # (arguments, exit code, text the one-line error must contain)
    (("status", MISSING), 3, f"no job with id {MISSING}"),
    (("status", "not-a-uuid"), 3, "no job with id not-a-uuid"),
    (("cancel", "not-a-uuid"), 3, "no job with id not-a-uuid"),
    (("retry", MISSING), 3, "no job with id"),
    (("resubmit", MISSING), 3, "no job with id"),
    (("delete", MISSING), 3, "no job with id"),
    (("submit", "noop", "--payload", "{not json"), 1, "--payload is not valid JSON"),
    (("submit", "noop", "--payload", "[1, 2]"), 1, "--payload must be a JSON object"),
    (("submit", "rocket"), 1, "unknown job type 'rocket'"),
    (("submit", "email_welcome", "--payload", '{"email": "nope"}'), 1, "'email_welcome': email: Enter a valid email"),
    (("submit", "noop", "--delay", "-5"), 1, "delay must be zero or more"),
    (("submit", "noop", "--run-at", "tomorrow"), 2, "is not an ISO 8601 time"),
    (("submit", "noop", "--owner", "ghost"), 3, "no user named 'ghost'"),
    (("retry",), 2, "give a job id or --all-dead"),
    (("list", "--created-after", "soon"), 2, "is not an ISO 8601 time"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=[" ".join(case[0]) for case in BAD_INPUT])
def test_bad_input_exits_non_zero_with_a_one_line_error(args, code, message):
    result = cli(*args)

    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: ") and message in line, line


def test_an_invalid_transition_is_refused_with_exit_1():
    job = submit()
    result = cli("retry", str(job.id))

    assert result.returncode == 1
    assert result.stderr.strip() == f"CommandError: job {job.id} is queued; only dead jobs can be retried"


@pytest.mark.parametrize(
    "args",
    [("pause", "urgent"), ("list", "--status", "sleeping"), ("purge", "--older-than-days", "-1"), ("frobnicate",)],
    ids=["unknown queue", "unknown status", "negative days", "unknown subcommand"],
)
def test_bad_arguments_are_usage_errors_without_a_traceback(args):
    result = cli(*args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("manage.py jobs")
    assert "error:" in result.stderr.splitlines()[-1]


def test_an_unreachable_database_exits_4_with_one_line():
    result = cli("stats", env={"DATABASE_URL": f"postgres://jobqueue@127.0.0.1:{test_services.free_port()}/jobqueue"})

    assert result.returncode == 4, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: cannot reach a service: OperationalError")


def test_text_output_reads_as_text_and_info_lines_stay_out_of_a_shell(broker):
    result = cli("submit", "email_welcome", "--payload", '{"email": "a@example.com"}')

    assert result.returncode == 0 and result.stderr == ""  # LOG_LEVEL=INFO here: still no INFO line
    fields = dict(line.strip().split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert fields["payload"] == '{"email": "a@example.com"}' and fields["result"] == "-"
    assert "None" not in result.stdout and "{'" not in result.stdout
    assert "job submitted" in cli("-v", "2", "submit", "noop").stderr


def test_delete_and_purge_show_what_would_go_with_dry_run_and_delete_nothing():
    doomed = [dead(), dead()]

    assert sorted(jobs_json("purge", "--dry-run")["would_purge"]) == sorted(str(job.id) for job in doomed)
    assert jobs("delete", str(doomed[0].id), "--dry-run").strip() == f"would delete {doomed[0].id} (dead)"
    assert Job.objects.filter(pk__in=[job.id for job in doomed]).count() == 2


def test_on_a_terminal_delete_and_purge_ask_first(tmp_path):
    import pty

    job = dead()

    def answered(answer: str, *args: str) -> subprocess.CompletedProcess:
        controller, terminal = pty.openpty()
        os.write(controller, answer.encode() + b"\n")
        try:
            command = [test_services.python(), "manage.py", "jobs", *args]
            return subprocess.run(
                command, cwd=test_services.ROOT, stdin=terminal, capture_output=True, text=True, timeout=60
            )
        finally:
            os.close(controller)
            os.close(terminal)

    refused = answered("n", "delete", str(job.id))
    assert refused.returncode == 1 and "Delete job" in refused.stderr and "not deleted" in refused.stderr
    assert answered("n", "purge").returncode == 1 and Job.objects.filter(pk=job.id).exists()
    assert answered("y", "purge").returncode == 0 and not Job.objects.filter(pk=job.id).exists()
    assert answered("", "purge", "--yes").returncode == 0  # nothing left: nothing to ask
