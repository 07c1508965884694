"""SPEC §4 with real processes: retries, dead letters, durable delays, movers, crash safety."""

import json
import signal
import statistics
import time
from datetime import timedelta

import requests
from django.utils import timezone

from jobs import services
from jobs.adapters import broker as broker_view
from jobs.models import Job, JobAttempt
from tests.handlers import EFFECTS_KEY
from tests.servers import wait_for

from .conftest import jobs_cli, wait_until_terminal

FAST_RECOVERY = {"JOB_LEASE_SECONDS": "3", "JOB_LEASE_RENEW_SECONDS": "1", "JOB_LOST_CHECK_SECONDS": "1"}


def submit(job_type: str, payload: dict | None = None, **options) -> str:
    job, _ = services.job_submit(type=job_type, payload=payload or {}, **options)
    return str(job.id)


def attempts_of(job_id: str) -> list[JobAttempt]:
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))


def test_a_flaky_job_is_retried_with_growing_waits_until_it_succeeds(start_worker, start_mover):
    start_worker("flaky", concurrency=1)
    start_mover()
    job_id = submit("test.flaky", {"fail_times": 2})

    wait_until_terminal([job_id], timeout=60)

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.result) == ("succeeded", 3, {"succeeded_on": 3})
    history = attempts_of(job_id)
    assert [a.outcome for a in history] == ["failed", "failed", "succeeded"]
    waits = [(history[i + 1].started_at - history[i].finished_at).total_seconds() for i in range(2)]
    print(f"waits between attempts: {waits[0]:.3f}s, {waits[1]:.3f}s (base 0.5s)")
    # Policy with base 0.5: first wait in [0.25, 0.5], second in [0.5, 1.0], so the waits grow.
    # Each also includes the dispatch (the mover's sweep, the worker's pickup), which can push
    # the first past the second's floor: the floors are exact, the ceilings allow for it.
    assert 0.25 <= waits[0] <= 0.5 + 1.0
    assert 0.5 <= waits[1] <= 1.0 + 1.0


def test_an_exhausted_job_dies_into_the_dead_letter_queue_and_can_be_retried_or_resubmitted(
    start_worker, start_mover, web, make_user, broker
):
    start_worker("dlq", concurrency=1)
    start_mover()
    user, token = make_user()
    headers = {"Authorization": f"Token {token}"}
    body = {"type": "test.fail", "payload": {"fail": True}, "max_retries": 2}
    job_id = requests.post(f"{web}/submit-job", json=body, headers=headers, timeout=10).json()["id"]

    wait_until_terminal([job_id], timeout=60)

    status = requests.get(f"{web}/job-status/{job_id}", headers=headers, timeout=10).json()
    assert (status["status"], status["attempts"], status["retries"]) == ("dead", 3, 2)
    assert status["error"]["type"] == "RuntimeError" and "failing as asked" in status["error"]["message"]
    assert "traceback" not in status["error"]  # the client's view; staff see it
    _, operator_token = make_user("operator", staff=True)
    staff_headers = {"Authorization": f"Token {operator_token}"}
    as_staff = requests.get(f"{web}/job-status/{job_id}", headers=staff_headers, timeout=10)
    assert "Traceback" in as_staff.json()["error"]["traceback"]
    assert "retries exhausted" in status["reason"]
    # The copy is parked after the worker's commit, a moment after the status.
    wait_for(lambda: broker_view.dead_letter_job_ids() == [job_id], timeout=10, what="the dead-letter copy")

    # `jobs retry` runs it again under the same id: three more attempts, dead again.
    retried = jobs_cli("retry", job_id)
    assert retried.returncode == 0, retried.stderr
    wait_for(
        lambda: len(attempts_of(job_id)) == 6 and Job.objects.get(pk=job_id).status == "dead",
        timeout=60,
        what="the retried job to run three more attempts",
    )
    wait_for(lambda: broker_view.dead_letter_job_ids() == [job_id], timeout=10, what="the second dead-letter copy")
    # With a corrected payload it succeeds.
    fixed = jobs_cli("retry", job_id, "--payload", json.dumps({"fail": False}))
    assert fixed.returncode == 0, fixed.stderr
    wait_until_terminal([job_id], timeout=30)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.result) == ("succeeded", 1, {"fixed": True})
    assert broker_view.dead_letter_job_ids() == []

    # `jobs resubmit` creates a new job from the old one.
    resubmitted = jobs_cli("--json", "resubmit", job_id)
    assert resubmitted.returncode == 0, resubmitted.stderr
    new_id = json.loads(resubmitted.stdout)["id"]
    assert new_id != job_id
    assert str(Job.objects.get(pk=new_id).resubmitted_from_id) == job_id


def test_a_permanent_error_goes_dead_after_one_attempt(start_worker):
    start_worker("perm", concurrency=1)
    job_id = submit("test.permanent")

    wait_until_terminal([job_id], timeout=30)

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.error_type) == ("dead", 1, "PermanentError")
    assert "permanent" in job.reason


DELAYED = 500


def test_delayed_jobs_start_on_time_and_wait_in_the_database_not_in_the_broker(start_worker, start_mover, broker):
    start_worker("delays", concurrency=2)
    start_mover()
    # 500 jobs due over 10 s, one every 20 ms.
    ids = [submit("test.count", delay=1 + 9 * i / (DELAYED - 1)) for i in range(DELAYED)]

    # Until the end, every message in the broker (queued or delivered) is for a job already due.
    deadline = time.monotonic() + 90
    while Job.objects.filter(pk__in=ids, status="succeeded").count() < DELAYED:
        assert time.monotonic() < deadline, "delayed jobs did not all finish in 90 s"
        held = broker_job_ids(broker)
        not_due = Job.objects.filter(pk__in=held, run_at__gt=timezone.now()).count()
        assert not_due == 0, f"the broker holds {not_due} jobs that are not due yet"
        time.sleep(0.2)

    rows = JobAttempt.objects.filter(job_id__in=ids).values_list("started_at", "job__run_at")
    lateness = sorted((started - run_at).total_seconds() for started, run_at in rows)
    p50, p99 = statistics.median(lateness), lateness[int(len(lateness) * 0.99) - 1]
    print(
        f"lateness over {DELAYED} delayed jobs: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {lateness[-1] * 1000:.1f} ms, min {lateness[0] * 1000:.1f} ms"
    )
    assert len(lateness) == DELAYED
    assert lateness[0] >= 0, "a job started before its run_at"
    assert p99 < 1.0


def broker_job_ids(broker) -> list[str]:
    queued = [raw for queue in ("high", "medium", "low") for raw in broker.lrange(queue, 0, -1)]
    delivered = [json.loads(raw)[0] for raw in broker.hvals("unacked")]
    return [job_id for job_id in map(broker_view.job_id_of, queued + delivered) if job_id]


def test_two_movers_dispatch_every_due_job_exactly_once(start_mover, broker):
    run_at = timezone.now() + timedelta(seconds=3)
    ids = [submit("test.count", run_at=run_at) for _ in range(2000)]
    # Redis holds its data marker, as when movers ran before: without it (the `broker` fixture
    # cleared it) the first sweep takes Redis for flushed and sends every queued job again.
    broker_view.data_marker_missing()
    start_mover("mover-a")
    start_mover("mover-b")

    wait_for(
        lambda: Job.objects.filter(pk__in=ids, status="queued").count() == 2000,
        timeout=60,
        what="all jobs to be queued",
    )
    wait_for(lambda: broker.llen("medium") >= 2000, timeout=10, what="2000 messages")
    time.sleep(1)  # a duplicate publish would land now

    messages = [broker_view.job_id_of(raw) for raw in broker.lrange("medium", 0, -1)]
    assert len(messages) == 2000
    assert sorted(messages) == sorted(ids)


def test_a_killed_worker_loses_no_job(start_worker, start_mover):
    start_mover(env=FAST_RECOVERY)
    victim = start_worker("victim", concurrency=20, pool="threads", env=FAST_RECOVERY)
    ids = [submit("test.sleep", {"ms": 3000}, max_retries=3) for _ in range(20)]
    wait_for(lambda: Job.objects.filter(pk__in=ids, status="running").count() == 20, timeout=30, what="20 running jobs")

    killed_at = time.monotonic()
    victim.signal(signal.SIGKILL)
    start_worker("rescuer", concurrency=20, pool="threads", env=FAST_RECOVERY)
    statuses = wait_until_terminal(ids, timeout=90)
    print(f"recovery after kill -9: all 20 jobs succeeded {time.monotonic() - killed_at:.1f}s after the kill")

    assert set(statuses.values()) == {"succeeded"}
    for job_id in ids:
        history = attempts_of(job_id)
        assert [a.outcome for a in history] == ["lost", "succeeded"]
        assert history[0].worker.startswith("victim@") and history[1].worker.startswith("rescuer@")
        assert history[0].error_type == "WorkerLost"


def test_sigterm_lets_short_jobs_finish_and_requeues_long_ones(start_worker):
    leaving = start_worker("leaving", concurrency=2, env={"JOB_SHUTDOWN_GRACE": "2"})
    short = submit("test.sleep", {"ms": 1000})
    long = submit("test.sleep", {"ms": 6000})  # well over the grace of 2 s
    wait_for(
        lambda: Job.objects.filter(pk__in=[short, long], status="running").count() == 2,
        timeout=30,
        what="both jobs running",
    )

    # As docker stop and Kubernetes do: SIGTERM to the worker's main process only.
    leaving.signal(signal.SIGTERM, group=False)
    leaving.process.wait(30)
    start_worker("staying", concurrency=2)
    wait_until_terminal([short, long], timeout=60)

    assert [(a.outcome, a.worker.split("@")[0]) for a in attempts_of(short)] == [("succeeded", "leaving")]
    assert [(a.outcome, a.worker.split("@")[0]) for a in attempts_of(long)] == [
        ("interrupted", "leaving"),
        ("succeeded", "staying"),
    ]
    assert not Job.objects.filter(status="running").exists()


def test_jobs_survive_redis_restarting_empty(start_worker, start_mover, redis_server, broker):
    queued = [submit("test.count", priority=("high", "medium", "low")[i % 3]) for i in range(500)]
    scheduled = [submit("test.count", delay=3) for _ in range(200)]
    assert sum(broker.llen(q) for q in ("high", "medium", "low")) == 500

    redis_server.restart_empty()
    assert sum(broker.llen(q) for q in ("high", "medium", "low")) == 0
    recovery = {"JOB_REDISPATCH_AFTER": "2", "JOB_REDISPATCH_CHECK_SECONDS": "1"}
    start_mover(env=recovery)
    start_worker("after-restart", concurrency=2)

    statuses = wait_until_terminal(queued + scheduled, timeout=120)

    assert set(statuses.values()) == {"succeeded"}
    effects = broker.hgetall(EFFECTS_KEY)
    assert len(effects) == 700 and set(effects.values()) == {"1"}


def test_a_delayed_job_survives_restarts_of_worker_mover_and_redis(start_worker, start_mover, redis_server):
    job_id = submit("test.count", delay=8)
    worker, mover = start_worker("before", concurrency=1), start_mover("mover-before")
    worker.stop()
    mover.stop()
    redis_server.restart_empty()
    start_worker("after", concurrency=1)
    start_mover("mover-after")

    wait_until_terminal([job_id], timeout=60)

    job = Job.objects.get(pk=job_id)
    [attempt] = attempts_of(job_id)
    assert job.status == "succeeded" and attempt.worker.startswith("after@")
    assert attempt.started_at >= job.run_at


def test_a_job_over_its_timeout_fails_the_attempt_and_is_retried(start_worker, start_mover):
    start_worker("timeouts", concurrency=1)
    start_mover()
    job_id = submit("test.hang")

    wait_until_terminal([job_id], timeout=60)

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.error_type) == ("dead", 2, "SoftTimeLimitExceeded")
    assert [a.outcome for a in attempts_of(job_id)] == ["failed", "failed"]


def test_a_handler_that_ignores_the_soft_limit_is_stopped_by_the_hard_limit(start_worker):
    worker = start_worker("hard", concurrency=1)
    job_id = submit("test.stubborn")

    wait_until_terminal([job_id], timeout=60)

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.error_type) == ("dead", 1, "TimeLimitExceeded")
    # The worker replaced the killed process and keeps serving.
    follow_up = submit("test.count")
    assert wait_until_terminal([follow_up], timeout=30) == {follow_up: "succeeded"}
    assert worker.alive()
