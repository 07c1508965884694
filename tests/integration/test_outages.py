"""The services with PostgreSQL or Redis stopped for real: clear answers, nothing lost, healing by itself."""

import threading
from types import SimpleNamespace

import pytest
from celery.exceptions import Reject
from django.db import connections

from jobs import services
from jobs.adapters import broker as broker_view
from jobs.adapters import dispatch
from jobs.api import throttling
from jobs.models import Job, JobAttempt, PendingDispatch
from jobs.rules.states import Status
from tasks import worker


@pytest.fixture
def redis_stopped(redis_server):
    """Redis down (its data saved first, so it comes back with its queues' bindings), started again after."""
    redis_server.snapshot()
    redis_server.kill()
    try:
        yield redis_server
    finally:
        if redis_server.process.poll() is not None:
            redis_server.start()
        dispatch.broker_breaker.reset()


@pytest.fixture
def postgres_stopped(postgres):
    postgres.stop_fast()
    try:
        yield postgres
    finally:
        postgres.start_again()
        connections.close_all()


def test_with_redis_down_a_submit_is_stored_and_published_by_the_mover_once_redis_is_back(
    client_for, redis_stopped, broker
):
    client = client_for()
    body = {"type": "noop", "payload": {}, "priority": "high"}

    first = client.post("/submit-job", body, format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    retried = client.post("/submit-job", body, format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    redis_stopped.start()

    assert first.status_code == 201, first.content
    # The rate limits, counted in the same Redis, failed open; the next requests did not wait on Redis.
    assert throttling.counter_store()[2].is_open()
    assert (retried.status_code, retried.json()["id"]) == (200, first.json()["id"])
    job_id = first.json()["id"]
    assert list(Job.objects.values_list("status", flat=True)) == [Status.QUEUED]
    assert list(PendingDispatch.objects.values_list("job_id", "queue")) == [(Job.objects.get().pk, "high")]
    assert broker.llen("high") == 0

    assert services.jobs_dispatch_pending() == 1

    assert [broker_view.job_id_of(raw) for raw in broker.lrange("high", 0, -1)] == [job_id]
    assert not PendingDispatch.objects.exists()


def test_a_pending_job_that_moved_on_is_forgotten_not_published(redis_stopped, broker, db):
    job, _ = services.job_submit(type="noop", payload={})
    redis_stopped.start()
    services.job_cancel(job_id=job.id)

    assert services.jobs_dispatch_pending() == 0

    assert not PendingDispatch.objects.exists() and broker.llen("medium") == 0


def test_while_redis_is_still_down_the_pending_jobs_wait(redis_stopped, db):
    job, _ = services.job_submit(type="noop", payload={})

    with pytest.raises(Exception, match="(?i)connect|refused"):
        services.jobs_dispatch_pending()

    assert PendingDispatch.objects.filter(job_id=job.id).exists()


def test_with_the_database_down_every_endpoint_answers_503_json_naming_it(client_for, postgres):
    client = client_for()
    job_id = client.post("/submit-job", {"type": "noop", "payload": {}}, format="json").json()["id"]
    browser = client_for("operator", staff=True)
    browser.force_login(browser.user)  # the admin reads its session from the database

    postgres.stop_fast()
    try:
        answers = {
            "submit": client.post("/submit-job", {"type": "noop", "payload": {}}, format="json"),
            "status": client.get(f"/job-status/{job_id}"),
            "list": client.get("/api/jobs/"),
            "admin": browser.get("/admin/jobs/job/"),
        }
        health = client.get("/healthz")
    finally:
        postgres.start_again()
        connections.close_all()

    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.status_code, answer.content[:300])
        assert answer["Content-Type"] == "application/json", name
        assert answer["Retry-After"] == "5", name
        assert answer.json()["service"] == "database" and "database is unavailable" in answer.json()["detail"]
    assert health.status_code == 503 and health.json()["failed"] == ["database"]
    # Healed by itself: the next request works.
    assert client.get(f"/job-status/{job_id}").status_code == 200


def test_a_claim_waits_for_the_database_to_come_back(postgres, db):
    job, _ = services.job_submit(type="noop", payload={})
    postgres.stop_fast()
    threading.Timer(2.0, postgres.start_again).start()

    claim = worker.claim_when_reachable(job_id=str(job.id), worker="w1", request=SimpleNamespace(timelimit=None))

    assert claim is not None and claim.serial == 1
    assert Job.objects.get(pk=job.id).status == Status.RUNNING


def test_a_claim_gives_its_message_back_when_the_database_stays_down(postgres_stopped):
    request = SimpleNamespace(timelimit=(None, 2))  # soft limit 2 s: waits at most 1 s

    with pytest.raises(Reject) as rejected:
        worker.claim_when_reachable(job_id="00000000-0000-4000-8000-000000000001", worker="w1", request=request)

    assert rejected.value.requeue is True


def test_a_lost_attempt_is_queued_again_at_once_by_its_node(db, broker):
    job, _ = services.job_submit(type="test.effect", payload={})
    broker.delete("medium")
    claim = services.job_claim(job_id=job.id, worker="w1@host")

    assert services.job_lost(job_id=job.id, worker="w2@host", reason="not mine") is None
    assert services.job_lost(job_id=job.id, worker="w1@host", reason="pool process died") == Status.QUEUED

    job.refresh_from_db()
    attempt = JobAttempt.objects.get(job=job, number=claim.serial)
    assert (job.status, job.lease_expires_at, job.attempts) == (Status.QUEUED, None, 1)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == ("lost", "WorkerLost", "pool process died")
    assert [broker_view.job_id_of(raw) for raw in broker.lrange("medium", 0, -1)] == [str(job.id)]
    # The new message is claimed normally.
    assert services.job_claim(job_id=job.id, worker="w2@host").serial == 2


def test_a_job_that_keeps_losing_its_process_dies_when_its_retries_are_used_up(db, broker):
    job, _ = services.job_submit(type="test.effect", payload={}, max_retries=1)
    for serial in (1, 2):
        assert services.job_claim(job_id=job.id, worker="w1").serial == serial
        services.job_lost(job_id=job.id, worker="w1", reason="killed by the OOM killer")

    job.refresh_from_db()
    assert job.status == Status.DEAD and "retries exhausted" in job.reason
    assert list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True)) == ["lost", "lost"]


def test_a_queue_resumed_while_redis_is_down_leaves_its_backlog_to_the_mover(redis_server, broker, db):
    services.queue_pause(queue="low")
    ids = sorted(str(services.job_submit(type="noop", payload={}, priority="low")[0].id) for _ in range(2))
    assert broker.llen("low") == 0
    redis_server.snapshot()
    redis_server.kill()
    try:
        state, published = services.queue_resume(queue="low")

        assert (state.paused, published) == (False, 0)
        assert sorted(str(pk) for pk in PendingDispatch.objects.values_list("job_id", flat=True)) == ids
    finally:
        redis_server.start()
        dispatch.broker_breaker.reset()

    assert services.jobs_dispatch_pending() == 2
    assert sorted(broker_view.job_id_of(raw) for raw in broker.lrange("low", 0, -1)) == ids


def a_dead_job() -> Job:
    job, _ = services.job_submit(type="test.fail", payload={"fail": True}, max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="RuntimeError", message="boom")
    return job


def test_a_retry_or_delete_while_redis_is_down_stands_and_the_mover_drops_the_stale_dead_letters(
    redis_server, broker, db
):
    retried, deleted, still_dead = a_dead_job(), a_dead_job(), a_dead_job()
    assert broker_view.dead_letter_length() == 3
    redis_server.snapshot()
    redis_server.kill()
    try:
        assert services.jobs_retry_dead(job_ids=[retried.id]) == [retried.id]
        services.job_delete(job_id=deleted.id)

        assert Job.objects.get(pk=retried.id).status == Status.QUEUED
        assert not Job.objects.filter(pk=deleted.id).exists()
    finally:
        redis_server.start()
        dispatch.broker_breaker.reset()
    assert broker_view.dead_letter_length() == 3  # the copies could not be dropped while Redis was down

    assert services.dead_letters_reconcile() == 2

    assert broker_view.dead_letter_job_ids() == [str(still_dead.id)]
    assert services.dead_letters_reconcile() == 0


@pytest.fixture
def postgres_read_only(postgres, db):
    """PostgreSQL failed over onto a read-only node: sessions cut, new ones read-only; writable again after."""
    postgres.read_only(True)
    connections.close_all()
    try:
        yield postgres
    finally:
        postgres.read_only(False)
        connections.close_all()


def test_on_a_read_only_database_a_submit_answers_503_naming_it_and_heals(client_for, postgres):
    client = client_for()

    postgres.read_only(True)
    connections.close_all()
    try:
        during = client.post("/submit-job", {"type": "noop", "payload": {}}, format="json")
    finally:
        postgres.read_only(False)
        connections.close_all()
    after = client.post("/submit-job", {"type": "noop", "payload": {}}, format="json")

    assert during.status_code == 503, during.content[:300]
    assert during["Retry-After"] == "5" and during.json()["service"] == "database"
    assert after.status_code == 201, after.content[:300]


def test_a_claim_waits_out_a_read_only_database(postgres, db):
    job, _ = services.job_submit(type="noop", payload={})
    postgres.read_only(True)
    connections.close_all()
    writable_again = threading.Timer(2.0, postgres.read_only, args=(False,))
    writable_again.start()
    try:
        claim = worker.claim_when_reachable(job_id=str(job.id), worker="w1", request=SimpleNamespace(timelimit=None))
    finally:
        writable_again.join()
        connections.close_all()

    assert claim is not None and claim.serial == 1
    assert Job.objects.get(pk=job.id).status == Status.RUNNING


def test_a_claim_gives_its_message_back_when_the_database_stays_read_only(postgres_read_only):
    request = SimpleNamespace(timelimit=(None, 2))  # soft limit 2 s: waits at most 1 s

    with pytest.raises(Reject) as rejected:
        worker.claim_when_reachable(job_id="00000000-0000-4000-8000-000000000001", worker="w1", request=request)

    assert rejected.value.requeue is True


def test_a_publish_that_fails_for_a_bug_is_loud_not_deferred(client_for, broker, monkeypatch, caplog):
    client = client_for()
    job, _ = services.job_submit(type="noop", payload={}, priority="low")
    jobs = [(job.id, "low", None, "noop")]

    def broken_envelope(*args, **kwargs):
        raise TypeError("a bug in the message's envelope")

    monkeypatch.setattr(dispatch, "_envelope", broken_envelope)
    sent = dispatch.publish_or_defer(jobs)
    health = client.get("/healthz")
    monkeypatch.undo()

    assert sent == 0 and "TypeError: a bug in the message's envelope" in caplog.text
    assert not dispatch.broker_breaker.is_open()
    assert not PendingDispatch.objects.filter(job_id=job.id).exists()
    assert health.status_code == 503 and "dispatch" in health.json()["failed"], health.json()
    # Once the code publishes again, so does the health check.
    assert dispatch.publish_or_defer(jobs) == 1
    assert client.get("/healthz").status_code == 200


def test_the_mover_waits_out_an_outage_but_reports_a_bug_loudly(db, monkeypatch, caplog):
    from django.db import IntegrityError, OperationalError

    from jobs.services.mover import Mover

    mover, stop = Mover(interval=0.01), threading.Event()
    failures = [IntegrityError("a bug: a duplicate key"), OperationalError("connection refused")]

    def failing_round() -> int:
        if len(failures) == 1:
            mover.lost_sweep.due = 0.0  # what the round after the bug left
        if not failures:
            stop.set()
            return 0
        raise failures.pop(0)

    monkeypatch.setattr(mover, "tick", failing_round)
    mover.run(stop)

    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name == "jobqueue.mover"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "jobqueue.mover"]
    assert errors == ["mover round failed unexpectedly"]
    assert warnings == ["mover round failed, retrying: OperationalError: connection refused"]
    assert mover.lost_sweep.due > 0  # the lost-lease sweep waits after the outage
