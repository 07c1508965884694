"""Cluster-wide limits at the services' level, on the real PostgreSQL: the limited claim under
concurrent claims, waiting reasons, the wakes, the rate window, partitions, overrides, bad input."""

import importlib
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DataError, connection
from django.utils import timezone
from psycopg.pq import TransactionStatus

from jobs import services
from jobs.adapters.store import store
from jobs.models import Job, JobLimit, JobStart
from jobs.rules.limits import LimitProblem, Rate, make_limit, parse_rate
from jobs.rules.states import Status
from jobs.services import limit_selectors
from tests.api_coverage import covers


def submit(job_type: str, **fields):
    job, _ = services.job_submit(type=job_type, payload=fields.pop("payload", {}), **fields)
    return job


def claim(job, worker: str = "w1"):
    return services.job_claim(job_id=job.id, worker=worker, job_type=job.type)


def status(job) -> str:
    job.refresh_from_db()
    return job.status


@pytest.fixture(autouse=True)
def _fresh_overrides():
    limit_selectors.forget_overrides()
    yield
    limit_selectors.forget_overrides()


def test_concurrent_claims_from_many_threads_respect_the_concurrency_limit():
    jobs = [submit("test.limited") for _ in range(10)]
    results: list[object] = []
    barrier = threading.Barrier(len(jobs))

    def take(job) -> None:
        barrier.wait()
        try:
            results.append(claim(job, worker=f"w-{job.id}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(result is not None for result in results) == 2
    counts = {s: Job.objects.filter(status=s).count() for s in (Status.RUNNING, Status.WAITING)}
    assert counts == {Status.RUNNING: 2, Status.WAITING: 8}
    waiting = Job.objects.filter(status=Status.WAITING).first()
    assert waiting.reason == "concurrency 2 of test.limited reached"
    assert waiting.run_at is None and waiting.limit_key == ""


def test_an_unlimited_type_takes_the_plain_claim_and_holds_no_slot():
    job = submit("test.sleep")
    assert claim(job).limit_key is None
    job.refresh_from_db()
    assert (job.status, job.limit_key) == (Status.RUNNING, None)


def test_a_finished_attempt_wakes_the_best_waiting_job_of_its_type():
    first, second = submit("test.limited"), submit("test.limited")
    low, high = submit("test.limited", priority="low"), submit("test.limited", priority="high")
    running = [claim(first), claim(second)]
    assert claim(low) is None and claim(high) is None
    assert (status(low), status(high)) == (Status.WAITING, Status.WAITING)

    assert services.jobs_succeed([services.Success(str(first.id), running[0].serial, {}, timezone.now(), running[0])])

    assert (status(high), status(low)) == (Status.QUEUED, Status.WAITING)  # high priority first, though newer
    woken = claim(high)
    assert woken is not None and woken.limit_key == ""
    services.job_fail(job_id=second.id, serial=running[1].serial, error_type="E", message="boom", permanent=True)
    assert status(low) == Status.QUEUED


@pytest.mark.postgres_only
def test_the_success_statement_tells_whether_a_job_waits_for_the_slot_it_frees():
    # What lets a limited job's success skip its own look for waiting jobs, most of the time.
    first, second, third, waiter = (submit("test.limited") for _ in range(4))
    unlimited = submit("test.sleep")
    claims = {job.id: claim(job) for job in (first, second, unlimited)}
    now = timezone.now()

    assert store().succeed_many([(first.id, claims[first.id].serial, {}, now)]) == {str(first.id): False}
    assert claim(third) is not None and claim(waiter) is None and status(waiter) == Status.WAITING
    finished = [(job.id, claims[job.id].serial, {}, now) for job in (second, unlimited)]
    assert store().succeed_many(finished) == {str(second.id): True, str(unlimited.id): None}


@pytest.mark.postgres_only
def test_a_guarded_claim_that_fails_leaves_no_transaction_open_and_no_lock_held():
    now = timezone.now()
    with pytest.raises(DataError):  # an id the database refuses, after the partition's lock was granted
        store().claim_within(
            name="a partition", concurrency=1, job_type="test.limited", limit_key="",
            job_id="not-a-uuid", worker="w1", now=now, lease=timedelta(seconds=30),
        )  # fmt: skip

    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == 0
    job = submit("test.limited")
    assert claim(job) is not None and status(job) == Status.RUNNING


def test_a_lost_lease_frees_its_slot_and_wakes_a_waiting_job():
    holder, other = submit("test.limited"), submit("test.limited")
    waiter = submit("test.limited")
    claim(holder), claim(other)
    assert claim(waiter) is None
    Job.objects.filter(pk=holder.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert services.jobs_requeue_lost() == 1

    assert status(holder) == Status.DEAD  # max_retries=0: the lost attempt was its last
    assert status(waiter) == Status.QUEUED
    assert claim(waiter) is not None


def test_a_job_over_the_rate_waits_until_the_window_frees():
    services.limit_set(type="test.rated", rate="3/minute", by="test")
    jobs = [submit("test.rated", payload={"n": n}) for n in range(4)]
    assert all(claim(job) is not None for job in jobs[:3])
    assert claim(jobs[3]) is None

    late = Job.objects.get(pk=jobs[3].id)
    first_start = JobStart.objects.order_by("at").first().at
    assert late.status == Status.WAITING
    assert late.reason == "rate 3/minute of test.rated reached"
    assert late.run_at == first_start + timedelta(seconds=60)
    assert services.jobs_wake_due() == 0  # not yet due
    assert status(late) == Status.WAITING

    # A minute passes: the window no longer holds the first start.
    JobStart.objects.update(at=timezone.now() - timedelta(seconds=61))
    Job.objects.filter(pk=late.pk).update(run_at=timezone.now() - timedelta(seconds=1))
    assert services.jobs_wake_due() == 1
    assert claim(late) is not None


def test_due_rate_waiters_that_find_no_room_wait_for_the_next_free_time_not_in_a_loop():
    services.limit_set(type="test.rated", rate="1/minute", by="test")
    first, second = submit("test.rated"), submit("test.rated")
    claim(first)
    assert claim(second) is None
    Job.objects.filter(pk=second.pk).update(run_at=timezone.now() - timedelta(seconds=1))

    assert services.jobs_wake_due() == 0
    second.refresh_from_db()
    assert second.status == Status.WAITING and second.run_at > timezone.now()


def test_rate_waiters_left_when_the_window_frees_keep_a_run_at_of_the_next_free_time():
    services.limit_set(type="test.rated", rate="1/minute", by="test")
    first, second, third = submit("test.rated"), submit("test.rated"), submit("test.rated")
    claim(first)
    assert claim(second) is None and claim(third) is None

    # A minute passes: the window frees for one start, and both waiters are due.
    JobStart.objects.update(at=timezone.now() - timedelta(seconds=61))
    Job.objects.filter(pk__in=[second.pk, third.pk]).update(run_at=timezone.now() - timedelta(seconds=1))
    woke_at = timezone.now()
    assert services.jobs_wake_due() == 1

    assert status(second) == Status.QUEUED  # the older one
    third.refresh_from_db()
    assert third.status == Status.WAITING
    # The woken job's start fills the window for a minute: the waiter is due when that frees.
    assert third.run_at is not None
    assert woke_at + timedelta(seconds=60) <= third.run_at <= timezone.now() + timedelta(seconds=60)


def test_a_limit_key_partitions_the_limit_by_payload_value():
    a1, a2 = submit("test.per_key", payload={"key": "a"}), submit("test.per_key", payload={"key": "a"})
    b1 = submit("test.per_key", payload={"key": "b"})
    running_a = claim(a1)
    assert running_a.limit_key == "key=a"
    assert claim(b1) is not None  # another key runs alongside
    assert claim(a2) is None
    a2.refresh_from_db()
    assert a2.reason == "concurrency 1 of test.per_key for key=a reached"

    services.jobs_succeed([services.Success(str(a1.id), running_a.serial, {}, timezone.now(), running_a)])
    assert status(a2) == Status.QUEUED


def test_each_owner_has_its_own_partitions_so_no_client_uses_up_anothers(make_user):
    alice, _ = make_user("alice")
    mallory, _ = make_user("mallory")
    hers = submit("test.per_key", payload={"key": "42"}, owner=alice)
    theirs = [submit("test.per_key", payload={"key": "42"}, owner=mallory) for _ in range(2)]
    from_code = [submit("test.per_key", payload={"key": "42"}) for _ in range(2)]

    assert claim(theirs[0]) is not None
    assert claim(theirs[1]) is None  # only the client's own partition is full
    running = claim(hers)
    assert running is not None and running.limit_key == f"owner {alice.pk}: key=42"
    assert claim(from_code[0]).limit_key == "key=42"  # jobs submitted by code have no owner
    assert claim(from_code[1]) is None
    waiting = Job.objects.get(pk=theirs[1].pk)
    assert waiting.reason == f"concurrency 1 of test.per_key for owner {mallory.pk}: key=42 reached"


def test_a_rate_window_is_an_owners_own_and_tells_nothing_of_anothers_starts(make_user):
    services.limit_set(type="test.rated", rate="1/minute", limit_key="customer_id", by="test")
    alice, _ = make_user("alice")
    mallory, _ = make_user("mallory")
    claim(submit("test.rated", payload={"customer_id": 42}, owner=alice))
    probe = submit("test.rated", payload={"customer_id": 42}, owner=mallory)
    assert claim(probe) is not None  # not refused, and no run_at that says when alice started
    nameless = [submit("test.rated", payload={}, owner=owner) for owner in (alice, mallory)]
    assert [claim(job).limit_key for job in nameless] == [f"owner {alice.pk}", f"owner {mallory.pk}"]


def test_the_upgrade_moves_the_slots_clients_hold_into_their_own_partitions(make_user):
    from django.apps import apps

    migration = importlib.import_module("jobs.migrations.0010_limit_partitions_per_owner")
    alice, _ = make_user("alice")
    held = claim(submit("test.per_key", payload={"key": "42"}, owner=alice))
    from_code = claim(submit("test.per_key", payload={"key": "42"}))
    Job.objects.filter(pk=held.job_id).update(limit_key="key=42")  # as a claim before the upgrade wrote it

    migration.owners_partitions(apps, None)
    migration.owners_partitions(apps, None)  # twice: changes nothing more

    assert Job.objects.get(pk=held.job_id).limit_key == f"owner {alice.pk}: key=42"
    assert Job.objects.get(pk=from_code.job_id).limit_key == "key=42"
    assert claim(submit("test.per_key", payload={"key": "42"}, owner=alice)) is None  # the slot counts


def test_an_override_replaces_the_code_limits_and_clearing_it_brings_them_back():
    services.limit_set(type="test.sleep", concurrency=1, by="test")
    first, second = submit("test.sleep"), submit("test.sleep")
    assert claim(first) is not None
    assert claim(second) is None
    assert Job.objects.get(pk=second.pk).reason == "concurrency 1 of test.sleep reached"

    assert services.limit_clear(type="test.sleep", by="test")
    assert not limit_selectors.effective_limit("test.sleep").limits
    assert services.jobs_wake_waiting() == 1  # the sweep: no limit any more, so it runs
    assert claim(second) is not None

    services.limit_set(type="test.limited", concurrency=5, by="test")
    assert limit_selectors.effective_limit("test.limited").concurrency == 5
    services.limit_set(type="test.limited", by="test")  # an override of nothing: unlimited
    assert not limit_selectors.effective_limit("test.limited").limits
    services.limit_clear(type="test.limited")
    assert limit_selectors.effective_limit("test.limited").concurrency == 2


def test_the_sweep_wakes_a_waiting_job_whose_wake_was_lost():
    holder, waiter = submit("test.limited_fails"), submit("test.limited_fails")
    running = claim(holder)
    assert claim(waiter) is None
    # The slot frees without a wake (as if the process died between the two).
    Job.objects.filter(pk=holder.pk).update(status=Status.SUCCEEDED)
    assert running is not None

    assert services.jobs_wake_waiting() == 1
    assert status(waiter) == Status.QUEUED


def test_a_waiting_job_can_be_cancelled():
    claim(submit("test.limited")), claim(submit("test.limited"))
    waiter = submit("test.limited")
    claim(waiter)
    assert services.job_cancel(job_id=waiter.id).status == Status.CANCELLED


def test_the_mover_prunes_starts_older_than_any_window():
    JobStart.objects.create(type="test.rated", limit_key="", at=timezone.now() - timedelta(days=2))
    JobStart.objects.create(type="test.rated", limit_key="", at=timezone.now())
    assert services.job_starts_prune() == 1


def test_limits_parse_and_refuse_what_cannot_be():
    assert parse_rate("60/minute") == Rate(60, 60)
    assert parse_rate("10/30s") == Rate(10, 30)
    assert str(parse_rate("5 / second")) == "5/second"
    for bad, field in ((dict(concurrency=0), "concurrency"), (dict(concurrency=-1), "concurrency")):
        with pytest.raises(LimitProblem) as problem:
            make_limit(rate=None, limit_key=None, **bad)
        assert problem.value.field == field
    for rate in ("lots", "0/minute", "5/fortnight", "5/0s"):
        with pytest.raises(LimitProblem) as problem:
            make_limit(concurrency=None, rate=rate, limit_key=None)
        assert problem.value.field == "rate"


@pytest.fixture
def staff(client_for):
    return client_for("ops", staff=True, perms=("view_queuestate", "change_queuestate"))


@pytest.mark.parametrize(
    ("job_type", "body", "field"),
    [
        ("test.limited", {"concurrency": 0}, "concurrency"),
        ("test.limited", {"concurrency": -3}, "concurrency"),
        ("test.limited", {"rate": "lots"}, "rate"),
        ("test.limited", {"rate": "0/minute"}, "rate"),
        ("test.limited", {"concurrency": 1, "limit_key": "no spaces"}, "limit_key"),
        ("no.such.type", {"concurrency": 1}, "type"),
        ("test.limited", {"concurrency": 10**20}, "concurrency"),
        ("test.limited", {"concurrency": 2**31}, "concurrency"),
        ("test.limited", {"concurrency": 1, "concurency": 2}, "concurency"),
    ],
)
@covers("PUT", "/api/limits/{type}/")
def test_bad_limits_are_a_400_naming_the_field(staff, job_type, body, field):
    answer = staff.put(f"/api/limits/{job_type}/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not JobLimit.objects.exists()


@covers("GET", "/api/limits/")
@covers("GET", "/api/limits/{type}/")
@covers("PUT", "/api/limits/{type}/")
@covers("DELETE", "/api/limits/{type}/")
def test_the_api_lists_sets_and_clears_limits(staff, client_for):
    listed = staff.get("/api/limits/").json()
    assert {row["type"] for row in listed} >= {"test.limited", "test.per_key", "test.rated"}
    assert "test.sleep" not in {row["type"] for row in listed}

    answer = staff.put("/api/limits/test.sleep/", {"concurrency": 3, "rate": "10/second"}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["source"], body["concurrency"], body["rate"], body["code"]["concurrency"]) == (
        "override",
        3,
        "10/second",
        None,
    )
    assert JobLimit.objects.get(type="test.sleep").changed_by == "api:ops"

    submit("test.sleep")
    assert staff.get("/api/limits/test.sleep/").json()["running"] == 0
    cleared = staff.delete("/api/limits/test.sleep/").json()
    assert (cleared["source"], cleared["concurrency"]) == ("code", None)
    assert client_for("someone").get("/api/limits/").status_code == 403


def test_the_cli_sets_lists_and_clears_limits(capsys):
    call_command("jobs", "limits", "set", "test.sleep", "--concurrency", "2", "--key", "customer_id")
    assert "concurrency 2 per customer_id" in capsys.readouterr().out
    call_command("jobs", "limits", "list")
    assert "test.sleep" in capsys.readouterr().out
    call_command("jobs", "limits", "clear", "test.sleep")
    assert not JobLimit.objects.exists()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="rate"):
        call_command("jobs", "limits", "set", "test.sleep", "--rate", "often")


def test_the_admin_overview_shows_each_limited_type_with_its_usage_and_the_job_page_its_reason(operator):
    claim(submit("test.limited")), claim(submit("test.limited"))
    waiter = submit("test.limited")
    claim(waiter)

    page = operator.get("/admin/jobs/job/overview/").content.decode()
    row = page[page.index('data-type="test.limited"') :].split("</tr>")[0]
    assert "concurrency 2" in row and "2 of 2" in row and ">1</a>" in row
    assert 'data-type="test.rated"' in page and "rate 60/minute" in page

    job_page = operator.get(f"/admin/jobs/job/{waiter.pk}/change/").content.decode()
    assert "Waiting for a limit" in job_page and "concurrency 2 of test.limited reached" in job_page


def test_the_admin_sets_and_clears_an_override_through_the_services(operator):
    refused = operator.post("/admin/jobs/joblimit/add/", {"type": "test.sleep", "concurrency": "", "rate": "often"})
    assert refused.status_code == 200 and "does not parse" in refused.content.decode()
    assert not JobLimit.objects.exists()

    added = operator.post("/admin/jobs/joblimit/add/", {"type": "test.sleep", "concurrency": "1", "rate": "5/second"})
    assert added.status_code == 302
    override = JobLimit.objects.get(type="test.sleep")
    assert override.changed_by == "admin:root"
    assert limit_selectors.effective_limit("test.sleep").concurrency == 1
    assert "concurrency 1, rate 5/second" in operator.get("/admin/jobs/joblimit/").content.decode()

    operator.post(f"/admin/jobs/joblimit/{override.pk}/delete/", {"post": "yes"})
    assert not JobLimit.objects.exists()
    assert not limit_selectors.effective_limit("test.sleep").limits


def test_waits_are_counted_and_the_waiting_jobs_are_a_gauge_by_type():
    from django.test import Client
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("jobs_limit_waits_total", {"type": "test.limited"}) or 0.0
    claim(submit("test.limited")), claim(submit("test.limited"))
    claim(submit("test.limited")), claim(submit("test.limited"))

    assert REGISTRY.get_sample_value("jobs_limit_waits_total", {"type": "test.limited"}) == before + 2
    text = Client().get("/metrics").content.decode()
    assert 'jobs_waiting_on_limit{type="test.limited"} 2.0' in text
