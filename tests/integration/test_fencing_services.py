"""The services' side of the fence: an attempt that lost its job (cancelled, taken over) can no
longer change it, and the calls a worker node makes for its attempts touch those attempts only."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobAttempt
from jobs.rules.exceptions import InvalidTransition


def running(job_type: str = "test.sleep", *, worker: str = "w1", max_retries: int = 3) -> services.Claim:
    job, _ = services.job_submit(type=job_type, payload={}, max_retries=max_retries)
    claim = services.job_claim(job_id=job.id, worker=worker)
    assert claim is not None
    return claim


def succeed(claim: services.Claim) -> list[services.Success]:
    return services.jobs_succeed([services.Success(claim.job_id, claim.serial, {"late": True}, timezone.now())])


def test_cancelling_a_running_job_closes_its_attempt_and_refuses_what_the_attempt_reports_later(make_user):
    alice, _ = make_user("alice", staff=True)
    late_success, late_failure = running(), running()

    for claim in (late_success, late_failure):
        job = services.job_cancel(job_id=claim.job_id, actor=alice)
        assert (job.status, job.reason) == ("cancelled", "cancelled by alice")
        attempt = JobAttempt.objects.get(job_id=claim.job_id, number=claim.serial)
        assert (attempt.outcome, attempt.error_type, attempt.error_message) == (
            "cancelled",
            "Cancelled",
            "cancelled by alice",
        )
        assert attempt.finished_at is not None

    assert succeed(late_success) == []
    refused = services.job_fail(job_id=late_failure.job_id, serial=late_failure.serial, error_type="E", message="late")
    assert refused is None
    for claim in (late_success, late_failure):
        job = Job.objects.get(pk=claim.job_id)
        assert (job.status, job.result, job.error_type) == ("cancelled", None, "")
        assert list(JobAttempt.objects.filter(job_id=claim.job_id).values_list("outcome", flat=True)) == ["cancelled"]
    with pytest.raises(InvalidTransition, match="finished job cannot be cancelled"):
        services.job_cancel(job_id=late_success.job_id, actor=alice)


def test_a_cancel_without_a_user_names_an_operator():
    claim = running()

    assert services.job_cancel(job_id=claim.job_id).reason == "cancelled by an operator"


def test_extending_leases_extends_and_returns_only_the_attempts_that_still_hold_their_jobs():
    holding = running()
    taken_over = running()
    # The first attempt of `taken_over` is lost; a second attempt (serial 2) runs it now.
    assert services.job_lost(job_id=taken_over.job_id, worker="w1", reason="test", serial=1) == "queued"
    newer = services.job_claim(job_id=taken_over.job_id, worker="w2")
    assert newer is not None and newer.serial == 2
    finished = running()
    assert succeed(finished) != []
    past = timezone.now() - timedelta(seconds=30)
    Job.objects.filter(pk__in=[holding.job_id, taken_over.job_id]).update(lease_expires_at=past)

    kept = services.jobs_extend_lease(
        attempts=[
            (holding.job_id, holding.serial),
            (taken_over.job_id, 1),
            (finished.job_id, finished.serial),
            ("00000000-0000-0000-0000-000000000000", 1),
        ]
    )

    assert kept == {(holding.job_id, 1)}
    rows = Job.objects.filter(pk__in=[holding.job_id, taken_over.job_id]).values_list("pk", "lease_expires_at")
    leases = {str(pk): lease for pk, lease in rows}
    assert leases[holding.job_id] > timezone.now()
    assert leases[taken_over.job_id] == past  # the stale attempt did not extend the newer one's lease
    assert Job.objects.get(pk=finished.job_id).lease_expires_at is None


def test_a_lost_report_for_an_old_attempt_never_touches_a_newer_attempt_of_the_same_node():
    first = running(worker="w1")
    assert services.job_lost(job_id=first.job_id, worker="w1", reason="pool process died", serial=1) == "queued"
    second = services.job_claim(job_id=first.job_id, worker="w1")
    assert second is not None and second.serial == 2

    again = services.job_lost(job_id=first.job_id, worker="w1", reason="late report", serial=1)

    assert again is None
    job = Job.objects.get(pk=first.job_id)
    assert (job.status, job.serial, job.worker) == ("running", 2, "w1")
    outcomes = list(JobAttempt.objects.filter(job_id=first.job_id).order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["lost", "running"]
    # The newer attempt's own report still counts.
    assert services.job_lost(job_id=first.job_id, worker="w1", reason="now it died", serial=2) == "queued"


def test_a_handler_whose_progress_is_refused_learns_why(make_user):
    from tasks import AttemptFenced, JobCancelled
    from tasks.context import JobContext

    alice, _ = make_user("alice", staff=True)
    cancelled, taken_over = running(), running()
    services.job_cancel(job_id=cancelled.job_id, actor=alice)
    Job.objects.filter(pk=taken_over.job_id).update(serial=taken_over.serial + 1)  # a newer attempt has it

    ctx = JobContext(job_id=cancelled.job_id, attempt=cancelled.attempt, serial=cancelled.serial)
    with pytest.raises(JobCancelled, match="cancelled by alice"):
        ctx.progress(50)
    other = JobContext(job_id=taken_over.job_id, attempt=taken_over.attempt, serial=taken_over.serial)
    with pytest.raises(AttemptFenced, match="progress refused") as raised:
        other.progress(50)
    assert not isinstance(raised.value, JobCancelled)
