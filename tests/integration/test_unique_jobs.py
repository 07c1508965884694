"""Unique jobs on a real database: the key, its window, bulk and operator interplay, bad input, races.

Runs on PostgreSQL, and again on SQLite through `make test-sqlite` (the races only on PostgreSQL).
"""

import io
import json
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from jobs import services
from jobs.adapters import metrics
from jobs.models import Job, UniqueJobKey
from jobs.rules import registry
from jobs.rules.states import Status

REPORT = "test.unique_report"  # a type declaring its uniqueness: one job per customer for an hour
SPEC = {"type": "noop", "payload": {"to": "a@example.com", "n": 1}, "unique_for": 60}


@pytest.fixture(autouse=True, scope="module")
def unique_report_type():
    registry.job_type(REPORT, unique_for=3600, unique_key=["customer"])(lambda payload, ctx: None)
    yield
    registry._registry.pop(REPORT)


def finish(job_id, *, ago: float = 0.0) -> None:
    """Run the job's attempt to success through the services, as a worker would; `ago` seconds back."""
    claim = services.job_claim(job_id=job_id, worker="test")
    assert services.jobs_succeed([services.Success(str(job_id), claim.serial, None, timezone.now())])
    Job.objects.filter(pk=job_id).update(finished_at=timezone.now() - timedelta(seconds=ago))


def kill(job_id) -> None:
    claim = services.job_claim(job_id=job_id, worker="test")
    assert services.job_fail(job_id=job_id, serial=claim.serial, error_type="E", message="m", permanent=True) == "dead"


def duplicates(job_type: str = "noop") -> float:
    return metrics.UNIQUE_DUPLICATES.labels(job_type, "medium")._value.get()


def test_a_second_submit_with_the_same_payload_is_answered_with_the_unfinished_job(client_for):
    client = client_for()
    before = duplicates()

    first = client.post("/submit-job", SPEC, format="json")
    reordered = {**SPEC, "payload": {"n": 1, "to": "a@example.com"}}  # the key is the canonical payload
    second = client.post("/submit-job", reordered, format="json")
    other = client.post("/submit-job", {**SPEC, "payload": {"to": "b@example.com", "n": 1}}, format="json")

    assert (first.status_code, first.json()["duplicate"]) == (201, None)
    assert (second.status_code, second.json()["duplicate"]) == (200, "unique_key")
    assert second.json() == {**first.json(), "duplicate": "unique_key"}  # the job as stored, payload and all
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert Job.objects.count() == 2
    assert duplicates() == before + 1


def test_a_finished_holder_answers_with_its_history(client_for):
    client = client_for()
    held = client.post("/submit-job", SPEC, format="json").json()
    finish(held["id"])

    again = client.post("/submit-job", SPEC, format="json").json()

    assert (again["id"], again["status"], again["duplicate"]) == (held["id"], "succeeded", "unique_key")
    assert [attempt["outcome"] for attempt in again["history"]] == ["succeeded"]


def test_the_key_is_per_owner(make_user):
    mine, _ = make_user("mine")
    theirs, _ = make_user("theirs")
    job, _ = services.job_submit(type="noop", payload={"x": 1}, unique_for=60, owner=mine)

    again, created_again = services.job_submit(type="noop", payload={"x": 1}, unique_for=60, owner=mine)
    other, created_other = services.job_submit(type="noop", payload={"x": 1}, unique_for=60, owner=theirs)

    assert (again.pk, created_again) == (job.pk, False)
    assert created_other and other.pk != job.pk


def test_a_type_declares_its_key_fields_and_a_submit_may_override_them():
    job, created = services.job_submit(type=REPORT, payload={"customer": 7, "month": "2030-01"})
    same_customer, again = services.job_submit(type=REPORT, payload={"customer": 7, "month": "2030-02"})
    other_customer, third = services.job_submit(type=REPORT, payload={"customer": 8, "month": "2030-01"})
    by_month, fourth = services.job_submit(
        type=REPORT, payload={"customer": 7, "month": "2030-02"}, unique_key=["month"]
    )

    assert created and not again and same_customer.pk == job.pk
    assert third and other_customer.pk != job.pk
    assert fourth and by_month.pk not in {job.pk, other_customer.pk}


def test_an_explicit_key_ignores_the_payload():
    job, _ = services.job_submit(type="noop", payload={"a": 1}, unique_for=60, unique_key="nightly-sync")
    same, created = services.job_submit(type="noop", payload={"b": 2}, unique_for=60, unique_key="nightly-sync")
    assert (same.pk, created) == (job.pk, False)


def test_unique_for_zero_frees_the_key_when_the_job_finishes():
    job, _ = services.job_submit(type="noop", payload={}, unique_for=0)
    assert services.job_submit(type="noop", payload={}, unique_for=0)[0].pk == job.pk

    finish(job.pk)
    after, created = services.job_submit(type="noop", payload={}, unique_for=0)

    assert created and after.pk != job.pk
    assert UniqueJobKey.objects.get().job_id == after.pk


def test_the_key_stays_taken_for_unique_for_seconds_after_the_job_finished():
    job, _ = services.job_submit(type="noop", payload={}, unique_for=600)
    finish(job.pk, ago=599)
    within, created_within = services.job_submit(type="noop", payload={}, unique_for=600)

    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(seconds=601))
    after, created_after = services.job_submit(type="noop", payload={}, unique_for=600)

    assert (within.pk, created_within, within.status) == (job.pk, False, Status.SUCCEEDED)
    assert created_after and after.pk != job.pk


def test_a_cancelled_job_releases_its_key_by_its_last_change():
    job, _ = services.job_submit(type="noop", payload={}, unique_for=0, delay=60)
    services.job_cancel(job_id=job.pk)

    assert services.job_submit(type="noop", payload={}, unique_for=0)[1]


def test_a_dead_job_retried_keeps_its_key_if_it_still_holds_it():
    dead, _ = services.job_submit(type="noop", payload={}, unique_for=600)
    kill(dead.pk)
    assert services.job_submit(type="noop", payload={}, unique_for=600)[0].pk == dead.pk  # within the window

    services.job_retry(job_id=dead.pk)
    assert services.job_submit(type="noop", payload={}, unique_for=600)[0].pk == dead.pk  # unfinished again


def test_a_dead_job_retried_after_losing_its_key_runs_without_it():
    dead, _ = services.job_submit(type="noop", payload={}, unique_for=0)
    kill(dead.pk)
    successor, created = services.job_submit(type="noop", payload={}, unique_for=0)
    assert created

    services.job_retry(job_id=dead.pk)

    assert services.job_submit(type="noop", payload={}, unique_for=0)[0].pk == successor.pk
    assert UniqueJobKey.objects.get().job_id == successor.pk


def test_resubmit_always_makes_a_new_job_and_takes_the_key_only_if_free():
    original, _ = services.job_submit(type=REPORT, payload={"customer": 1})
    kill(original.pk)  # dead, within the hour: it still holds the key

    copy = services.job_resubmit(job_id=original.pk)
    assert copy.pk != original.pk and UniqueJobKey.objects.get().job_id == original.pk

    Job.objects.filter(pk=original.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    second_copy = services.job_resubmit(job_id=original.pk)
    assert UniqueJobKey.objects.get().job_id == second_copy.pk
    assert services.job_submit(type=REPORT, payload={"customer": 1})[0].pk == second_copy.pk


def test_deleting_the_holder_frees_the_key():
    job, _ = services.job_submit(type="noop", payload={}, unique_for=600)
    services.job_delete(job_id=job.pk)

    again, created = services.job_submit(type="noop", payload={}, unique_for=600)
    assert created and UniqueJobKey.objects.get().job_id == again.pk


def test_a_bulk_submit_applies_uniqueness_item_by_item(client_for):
    client = client_for()
    held = client.post("/submit-job", SPEC, format="json").json()
    items = [SPEC, {**SPEC, "payload": {"k": 1}}, {**SPEC, "payload": {"k": 1}}, {"type": "noop", "payload": {"k": 1}}]

    response = client.post("/submit-jobs", {"jobs": items}, format="json")

    answers = response.json()["jobs"]
    assert response.status_code == 201
    assert [(a["created"], a["duplicate"]) for a in answers] == [
        (False, "unique_key"),
        (True, None),
        (False, "unique_key"),
        (True, None),  # not unique: a job of its own
    ]
    assert answers[0]["id"] == held["id"] and answers[2]["id"] == answers[1]["id"]
    assert Job.objects.count() == 3


def test_an_idempotency_key_answers_first_and_says_so(client_for):
    client = client_for()
    first = client.post("/submit-job", {**SPEC, "idempotency_key": "k1"}, format="json").json()

    again = client.post("/submit-job", {**SPEC, "idempotency_key": "k1"}, format="json")

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert again.json()["duplicate"] == "idempotency_key"


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"unique_for": -1}, "unique_for", "between 0 and"),
        ({"unique_for": "soon"}, "unique_for", "valid integer"),
        ({"unique_for": 1.5}, "unique_for", "valid integer"),
        ({"unique_for": 10**9}, "unique_for", "between 0 and 2592000"),
        ({"unique_key": ["missing"]}, "unique_key", "missing, which the payload lacks"),
        ({"unique_key": 5}, "unique_key", "a string or a list"),
        ({"unique_key": {"to": 1}}, "unique_key", "a string or a list"),
        ({"unique_key": [1]}, "unique_key", "a string or a list"),
        ({"unique_key": []}, "unique_key", "a string or a list"),
        ({"unique_key": ""}, "unique_key", "1 to 255 characters"),
        ({"unique_key": "k" * 256}, "unique_key", "1 to 255 characters"),
        ({"unique_for": True}, "unique_for", "valid integer"),
        ({"unique_for": None, "unique_key": ["to"]}, "unique_key", "needs unique_for"),
    ],
)
def test_bad_uniqueness_is_a_400_naming_the_field(client_for, change, field, text):
    response = client_for().post("/submit-job", {**SPEC, **change}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert text in " ".join(response.json()[field])
    assert not Job.objects.exists() and not UniqueJobKey.objects.exists()


@pytest.mark.parametrize("unique_key", ['"\\ud800"', '["\\ud800"]'])
def test_a_unique_key_with_a_lone_surrogate_is_a_400(client_for, unique_key):
    body = f'{{"type": "noop", "payload": {{}}, "unique_for": 5, "unique_key": {unique_key}}}'

    response = client_for().post("/submit-job", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"unique_key": ["unique_key contains text that is not valid Unicode"]}


def test_a_bad_item_names_its_field_in_a_bulk_submit(client_for):
    response = client_for().post("/submit-jobs", {"jobs": [SPEC, {**SPEC, "unique_for": -5}]}, format="json")

    assert response.status_code == 400
    assert response.json()["jobs"][0] == {} and list(response.json()["jobs"][1]) == ["unique_for"]


def test_a_type_declaring_bad_uniqueness_fails_at_import():
    for options in ({"unique_for": -1}, {"unique_key": ["a"]}, {"unique_for": 5, "unique_key": []}):
        with pytest.raises(ValueError, match="unique"):
            registry.job_type("test.bad_unique", **options)


def cli(*args: str) -> dict:
    out = io.StringIO()
    call_command("jobs", "--json", "submit", "noop", *args, stdout=out)
    return json.loads(out.getvalue())


def test_the_cli_submits_unique_jobs():
    first = cli("--payload", '{"a": 1, "b": 2}', "--unique-for", "60", "--unique-fields", "a")
    second = cli("--payload", '{"a": 1, "b": 3}', "--unique-for", "60", "--unique-fields", "a")
    third = cli("--payload", '{"c": 1}', "--unique-for", "60", "--unique-key", "only-one")
    fourth = cli("--payload", '{"d": 1}', "--unique-for", "60", "--unique-key", "only-one")

    assert second["id"] == first["id"] and fourth["id"] == third["id"] != first["id"]


@pytest.mark.postgres_only
@pytest.mark.parametrize("holder", ["none", "expired"])
def test_racing_submits_make_one_job(holder):
    """Twelve threads, each with its own connection, submit the same unique job at once: on a
    free key (the INSERT race) and on a key whose job's window is over (the take-over race)."""
    if holder == "expired":
        old, _ = services.job_submit(type="noop", payload={"race": 1}, unique_for=10)
        finish(old.pk, ago=60)
    barrier = threading.Barrier(12)
    answers: list = []

    def submit() -> None:
        try:
            barrier.wait()
            answers.append(services.job_submit(type="noop", payload={"race": 1}, unique_for=10))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 12
    assert sum(created for _, created in answers) == 1
    assert len({job.pk for job, _ in answers}) == 1
    assert Job.objects.filter(status=Status.QUEUED).count() == 1
