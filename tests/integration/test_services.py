import importlib
import re
import threading
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobs import services
from jobs.adapters.store import postgres as statements
from jobs.models import Job, JobAttempt
from jobs.rules import states
from jobs.rules.exceptions import InvalidTransition, JobNotFound
from jobs.rules.states import Status
from tests.interleave import after_statement, before_statement

LEASE = timedelta(seconds=30)


def submit(**overrides):
    job, _ = services.job_submit(**{"type": "noop", "payload": {}, **overrides})
    return job


def test_a_job_can_be_claimed_once():
    job = submit(type="test.sleep", payload={"ms": 5})

    first = services.job_claim(job_id=job.id, worker="w1")
    second = services.job_claim(job_id=job.id, worker="w2")

    assert first is not None and (first.attempt, first.serial, first.type) == (1, 1, "test.sleep")
    assert first.payload == {"ms": 5}
    assert second is None
    assert list(JobAttempt.objects.filter(job=job).values_list("worker", flat=True)) == ["w1"]


def test_concurrent_claims_let_exactly_one_through():
    job = submit()
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim(n: int) -> None:
        barrier.wait()
        try:
            results.append(services.job_claim(job_id=job.id, worker=f"w{n}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(result is not None for result in results) == 1
    assert Job.objects.get(pk=job.id).attempts == 1


def test_a_stale_attempt_cannot_overwrite_a_newer_state():
    job = submit()
    claim = services.job_claim(job_id=job.id, worker="w1")

    assert not services.jobs_succeed([services.Success(str(job.id), claim.serial + 1, {}, timezone.now())])
    assert services.jobs_succeed([services.Success(str(job.id), claim.serial, {"ok": 1}, timezone.now())])
    assert not services.jobs_succeed([services.Success(str(job.id), claim.serial, {"ok": 2}, timezone.now())])
    job.refresh_from_db()
    assert (job.status, job.result, job.progress) == (Status.SUCCEEDED, {"ok": 1}, 100)


def test_many_successes_are_recorded_at_once_and_stale_ones_change_nothing():
    jobs = [submit(max_retries=3) for _ in range(4)]
    claims = [services.job_claim(job_id=job.id, worker="w1") for job in jobs]
    # Its lease ran out while its handler ran: the attempt was recorded as failed.
    services.job_fail(job_id=jobs[3].id, serial=claims[3].serial, error_type="Lost", message="lease expired")
    finished = timezone.now()
    successes = [
        services.Success(claims[0].job_id, claims[0].serial, {"n": 0}, finished, claims[0]),
        services.Success(claims[1].job_id, claims[1].serial, None, finished),
        services.Success(claims[2].job_id, claims[2].serial + 1, {"n": 2}, finished),  # not its attempt
        services.Success(claims[3].job_id, claims[3].serial, {"n": 3}, finished),
    ]

    recorded = services.jobs_succeed(successes)

    assert recorded == successes[:2]
    rows = {str(job.pk): job for job in Job.objects.filter(pk__in=[job.id for job in jobs])}
    assert [(rows[c.job_id].status, rows[c.job_id].result) for c in claims] == [
        (Status.SUCCEEDED, {"n": 0}),
        (Status.SUCCEEDED, None),
        (Status.RUNNING, None),
        (Status.RETRYING, None),
    ]
    assert rows[claims[0].job_id].finished_at == finished
    outcomes = dict(JobAttempt.objects.filter(job_id__in=[j.id for j in jobs]).values_list("job_id", "outcome"))
    assert [outcomes[job.id] for job in jobs] == ["succeeded", "succeeded", "running", "failed"]


def test_a_failure_with_retries_left_waits_in_retrying():
    job = submit(type="test.flaky")
    claim = services.job_claim(job_id=job.id, worker="w1")

    status = services.job_fail(job_id=job.id, serial=claim.serial, error_type="ConnectionError", message="down")

    job.refresh_from_db()
    assert status == Status.RETRYING == job.status
    assert job.run_at is not None and job.error_type == "ConnectionError"
    assert JobAttempt.objects.get(job=job).outcome == "failed"


def test_a_permanent_failure_dies_and_is_parked_on_the_dead_letter_queue(broker):
    job = submit(type="test.permanent")
    claim = services.job_claim(job_id=job.id, worker="w1")

    status = services.job_fail(
        job_id=job.id, serial=claim.serial, error_type="PermanentError", message="never", permanent=True
    )

    job.refresh_from_db()
    assert status == Status.DEAD == job.status
    assert "permanent" in job.reason and job.finished_at is not None
    assert broker.llen("dead_letter") == 1


def test_progress_is_recorded_only_for_the_running_attempt():
    job = submit(type="test.progress")
    claim = services.job_claim(job_id=job.id, worker="w1")

    assert services.job_progress(job_id=job.id, serial=claim.serial, percent=140, message="almost")
    assert not services.job_progress(job_id=job.id, serial=claim.serial + 1, percent=10)
    job.refresh_from_db()
    assert (job.progress, job.progress_message) == (100, "almost")


def test_a_heartbeat_extends_only_the_lease_of_the_attempt_that_sent_it():
    job, other = submit(), submit()
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_claim(job_id=other.id, worker="w2")
    Job.objects.update(lease_expires_at=None)

    # A beat for this attempt, and a late one for an attempt of `other` that is no longer running.
    assert services.jobs_extend_lease(attempts=[(job.id, claim.serial), (other.id, 0)]) == {(str(job.id), claim.serial)}

    assert Job.objects.get(pk=job.id).lease_expires_at is not None
    assert Job.objects.get(pk=other.id).lease_expires_at is None


def test_a_move_from_a_status_outside_its_sources_is_refused():
    job = submit()
    assert not services.job_transition(states.SUCCEED, job_id=job.id)
    assert Job.objects.get(pk=job.id).status == Status.QUEUED


@pytest.mark.postgres_only
def test_the_hot_path_reaches_a_job_by_its_primary_key_whatever_the_statistics():
    # Statistics taken while no job is queued or running make a partial index by status look
    # empty; a planner led there would scan the whole backlog on each claim and finish.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {statements.JOB}")
    for _ in range(3):
        services.jobs_submit_many(submissions=[{"type": "noop", "payload": {}}] * 1000)
    job = Job.objects.filter(status=Status.QUEUED).first()
    now = timezone.now()
    plans = {
        "claim": (statements.CLAIM_STATEMENT, statements.claim_params(job_id=job.id, worker="w", now=now, lease=LEASE)),
        "limited claim": (
            statements.CLAIM_WITHIN_STATEMENT,
            {
                **statements.claim_params(job_id=job.id, worker="w", now=now, lease=LEASE),
                **{"type": "noop", "limit_key": "", "concurrency": 2},
            },
        ),
        "succeed one": (statements.SUCCEED_ONE, statements.succeed_one_params((job.id, 1, None, now))),
        "succeed": (statements.SUCCEED_MANY, statements.succeed_many_params([(job.id, 1, None, now)] * 2)),
    }
    for name, (statement, params) in plans.items():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + statement, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert f"Index Scan using {statements.JOB}_pkey on {statements.JOB}" in plan, f"{name}:\n{plan}"


def _numbered(statement: str) -> tuple[str, list[str]]:
    """`statement` with its %(name)s placeholders numbered ($1...), as PREPARE takes them; the names in order."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    return re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match[1]) + 1}", statement), names


@pytest.mark.postgres_only
def test_the_prepared_statements_generic_plans_reach_each_row_by_its_key():
    # A prepared statement may keep one generic plan until the tables' statistics change (an
    # ANALYZE, autovacuum's): with statistics of a table of some size, it must not scan it.
    for _ in range(3):
        services.jobs_submit_many(submissions=[{"type": "noop", "payload": {}}] * 1000)
    for job in Job.objects.all()[:2000]:
        services.job_claim(job_id=job.id, worker="w")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {statements.JOB}; ANALYZE {statements.ATTEMPT}")
    job = Job.objects.filter(status=Status.RUNNING).first()
    now = timezone.now()
    claim = statements.claim_params(job_id=job.id, worker="w", now=now, lease=LEASE)
    prepared = {
        "claim": (statements.CLAIM_STATEMENT, claim),
        "limited claim": (
            statements.CLAIM_WITHIN_STATEMENT,
            {**claim, "type": "noop", "limit_key": "", "concurrency": 2},
        ),
        "succeed one": (statements.SUCCEED_ONE, statements.succeed_one_params((job.id, 1, None, now))),
    }
    for name, (statement, params) in prepared.items():
        numbered, names = _numbered(statement)
        with connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE probe AS {numbered}")
            try:
                cursor.execute(f"EXPLAIN EXECUTE probe({', '.join(['%s'] * len(names))})", [params[n] for n in names])
                plan = "\n".join(row[0] for row in cursor.fetchall())
            finally:
                cursor.execute("DEALLOCATE probe")
                cursor.execute("RESET plan_cache_mode")
        assert f"Index Scan using {statements.JOB}_pkey on {statements.JOB}" in plan, f"{name}:\n{plan}"
        for table in (statements.JOB, statements.ATTEMPT):  # the queues' table has a row per queue
            assert f"Seq Scan on {table} " not in plan, f"{name}:\n{plan}"


def test_a_requeue_is_fenced_by_the_attempt_and_opens_a_fresh_one():
    job = submit()
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_progress(job_id=job.id, serial=claim.serial, percent=40, message="half")

    assert not services.job_requeue(job_id=job.id, serial=claim.serial + 1, reason="not this attempt")
    assert services.job_requeue(job_id=job.id, serial=claim.serial, reason="worker shutting down")
    job.refresh_from_db()
    assert (job.status, job.lease_expires_at) == (Status.QUEUED, None)
    first = JobAttempt.objects.get(job=job, number=claim.serial)
    assert (first.outcome, first.error_message) == ("interrupted", "worker shutting down")

    again = services.job_claim(job_id=job.id, worker="w2")
    job.refresh_from_db()
    assert (again.serial, job.progress, job.progress_message, job.worker) == (claim.serial + 1, 0, "", "w2")


def test_a_lost_attempt_is_requeued_only_for_the_node_that_ran_it():
    job = submit(max_retries=1)
    claim = services.job_claim(job_id=job.id, worker="w1@host")

    assert services.job_lost(job_id=job.id, worker="w2@host", reason="not mine") is None
    assert services.job_lost(job_id=job.id, worker="w1@host", reason="killed") == Status.QUEUED
    assert JobAttempt.objects.get(job=job, number=claim.serial).outcome == "lost"
    services.job_claim(job_id=job.id, worker="w1@host")
    assert services.job_lost(job_id=job.id, worker="w1@host", reason="killed again") == Status.DEAD


def test_a_hard_time_limit_reported_by_an_old_node_leaves_a_newer_attempt_alone():
    """Node 1 froze past its lease; the job now runs on node 2. Node 1's main process then reports
    the hard time limit of its old attempt: node 2's attempt runs on, and only a report from
    node 2 fails it."""
    job = submit(max_retries=3)
    services.job_claim(job_id=job.id, worker="w1@host")
    Job.objects.filter(pk=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.jobs_requeue_lost() == 1
    Job.objects.filter(pk=job.id).update(run_at=timezone.now())  # its backoff is over
    assert services.jobs_release_due() == 1
    newer = services.job_claim(job_id=job.id, worker="w2@host")

    hard_limit(job.id, node="w1@host")

    job.refresh_from_db()
    assert (job.status, job.serial, job.worker) == (Status.RUNNING, newer.serial, "w2@host")
    assert JobAttempt.objects.get(job=job, number=newer.serial).outcome == "running"
    hard_limit(job.id, node="w2@host")
    job.refresh_from_db()
    assert (job.status, job.error_type) == (Status.RETRYING, "TimeLimitExceeded")


def hard_limit(job_id, *, node: str) -> None:
    """What Celery does in a node's main process when the hard time limit killed a pool process:
    the task_failure signal, with no request of the task on its stack."""
    from billiard.exceptions import TimeLimitExceeded
    from celery import signals

    from tasks.runner import run_job

    signals.celeryd_after_setup.send(sender=node, instance=None, conf=None)
    signals.task_failure.send(
        sender=run_job, task_id=f"task-{node}", exception=TimeLimitExceeded(5), args=[str(job_id)], einfo=None
    )


def dead_job():
    job = submit(max_retries=0)
    claim = services.job_claim(job_id=job.id, worker="w1@host")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="RuntimeError", message="boom")
    return job


@pytest.mark.postgres_only
def test_a_job_claimed_while_it_is_deleted_is_not_deleted_running():
    """The claim comes between the delete's read of the job and its DELETE."""
    job = submit()
    with before_statement(r"^DELETE\b", lambda: services.job_claim(job_id=job.id, worker="w1@host")) as claim:
        try:
            services.job_delete(job_id=job.id)
            deleted = True
        except InvalidTransition:
            deleted = False

    assert "error" not in claim, claim.get("error")
    claimed = claim["result"] is not None
    assert deleted != claimed
    assert Job.objects.filter(pk=job.id).exists() == claimed


@pytest.mark.postgres_only
def test_an_operators_retry_during_a_purge_of_finished_jobs_does_not_vanish():
    """The retry comes between the purge's read of the dead job and its DELETE."""
    job = dead_job()
    later = timezone.now() + timedelta(seconds=1)
    with before_statement(r"^DELETE\b", lambda: services.job_retry(job_id=job.id)) as retry:
        purged = services.jobs_purge_finished(finished_before=later)

    retried = "result" in retry
    assert retried or isinstance(retry["error"], InvalidTransition | JobNotFound), retry
    assert purged == (0 if retried else 1)
    assert Job.objects.filter(pk=job.id, status=Status.QUEUED).exists() == retried


@pytest.mark.postgres_only
def test_an_ownerless_submit_racing_another_with_its_idempotency_key_is_answered_with_its_job():
    """Two owner-less submits (CLI, Python) with one key: the other stores its job between this
    one's look for the key and its INSERT."""

    def twin():
        return services.job_submit(type="noop", payload={"n": 1}, idempotency_key="nightly-42")

    with after_statement(r'"idempotency_key" IN', twin) as other:
        job, created = twin()

    assert "error" not in other, other.get("error")
    first, first_created = other["result"]
    assert (first_created, created, job.pk) == (True, False, first.pk)
    assert Job.objects.filter(idempotency_key="nightly-42").count() == 1


def test_the_database_keeps_the_idempotency_key_of_ownerless_jobs_unique():
    submit(idempotency_key="k")

    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(type="noop", payload={}, idempotency_key="k")
    Job.objects.create(type="noop", payload={}, idempotency_key="other")
    Job.objects.create(type="noop", payload={})
    Job.objects.create(type="noop", payload={})


@pytest.mark.postgres_only
def test_the_migration_leaves_a_shared_ownerless_key_on_the_oldest_job_only():
    """Duplicates stored before the key was unique for owner-less jobs do not stop the migration."""
    migration = importlib.import_module("jobs.migrations.0011_job_ownerless_idempotency_key_unique")
    [constraint] = [c for c in Job._meta.constraints if c.name == "job_ownerless_idempotency_key_unique"]
    with connection.schema_editor() as editor:
        editor.remove_constraint(Job, constraint)
    try:
        shared = [submit(payload={"n": n}) for n in range(3)]
        Job.objects.filter(pk__in=[job.pk for job in shared]).update(idempotency_key="k")
        alone = submit(idempotency_key="k2")
        mine = submit(owner=get_user_model().objects.create_user("a"), idempotency_key="k")

        migration.keep_each_key_on_its_oldest_job(django_apps, None)

        keys = dict(Job.objects.values_list("pk", "idempotency_key"))
    finally:
        Job.objects.filter(owner__isnull=True, idempotency_key="k").delete()  # whatever happened above
        with connection.schema_editor() as editor:
            editor.add_constraint(Job, constraint)
    assert [keys[job.pk] for job in shared] == ["k", None, None]
    assert (keys[alone.pk], keys[mine.pk]) == ("k2", "k")


@pytest.mark.postgres_only
def test_racing_ownerless_submits_with_one_idempotency_key_make_one_job():
    barrier = threading.Barrier(8)
    answers: list = []

    def submit_once() -> None:
        try:
            barrier.wait()
            answers.append(services.job_submit(type="noop", payload={}, idempotency_key="cron-7"))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(created for _, created in answers) == 1
    assert len({job.pk for job, _ in answers}) == 1 and len(answers) == 8
    assert Job.objects.count() == 1
