"""Job metrics recorded by the services, the web app's /metrics, /healthz?workers=1 and job event lines."""

import contextlib
import logging

from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from jobs import services
from jobs.adapters import broker as broker_view
from jobs.models import Outcome
from jobs.rules import states
from jobs.rules.states import Status

LOST = Outcome.LOST


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts(job_type: str, queue: str = "medium") -> dict[str, float]:
    labels = {"type": job_type, "queue": queue}
    names = ("jobs_submitted_total", "jobs_processed_total", "jobs_failed_total", "jobs_retried_total")
    names += ("jobs_dead_lettered_total", "job_processing_duration_seconds_count")
    return {name: sample(name, **labels) for name in names}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


def test_a_succeeded_attempt_counts_as_processed_with_its_duration():
    before = counts("noop", "high")
    job, _ = services.job_submit(type="noop", payload={}, priority="high")
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.jobs_succeed([services.Success(str(job.id), claim.serial, None, timezone.now())])

    assert delta(before, counts("noop", "high")) == {
        "jobs_submitted_total": 1,
        "jobs_processed_total": 1,
        "job_processing_duration_seconds_count": 1,
    }


def test_failed_attempts_count_as_retried_then_dead_and_a_lost_one_has_no_duration():
    before = counts("test.fail")
    job, _ = services.job_submit(type="test.fail", payload={}, max_retries=1)
    claim = services.job_claim(job_id=job.id, worker="w1")
    assert services.job_fail(job_id=job.id, serial=claim.serial, error_type="E", message="m") == "retrying"
    assert services.job_transition(states.BECOME_DUE, job_id=job.id)  # as the mover does when it is due
    claim = services.job_claim(job_id=job.id, worker="w1")
    lost = services.job_fail(job_id=job.id, serial=claim.serial, error_type="WorkerLost", message="m", outcome=LOST)
    assert lost == "dead"

    assert delta(before, counts("test.fail")) == {
        "jobs_submitted_total": 1,
        "jobs_failed_total": 2,
        "jobs_retried_total": 1,
        "jobs_dead_lettered_total": 1,
        "job_processing_duration_seconds_count": 1,
    }


def test_an_attempt_its_node_saw_lost_counts_as_failed_and_retried_without_a_duration(broker):
    before = counts("test.effect")
    job, _ = services.job_submit(type="test.effect", payload={})
    services.job_claim(job_id=job.id, worker="w1@host")
    assert services.job_lost(job_id=job.id, worker="w1@host", reason="pool process died") == Status.QUEUED

    assert delta(before, counts("test.effect")) == {
        "jobs_submitted_total": 1,
        "jobs_failed_total": 1,
        "jobs_retried_total": 1,
    }


def test_a_rolled_back_submission_is_not_counted():
    before = counts("noop")
    with contextlib.suppress(RuntimeError), transaction.atomic():
        services.job_submit(type="noop", payload={})
        raise RuntimeError("roll back")

    assert delta(before, counts("noop")) == {}


def test_metrics_serve_the_system_gauges_computed_from_redis_and_the_database(broker):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import Job

    waiting, _ = services.job_submit(type="noop", payload={}, priority="low")
    Job.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - timedelta(seconds=30))  # queued 30 s ago
    services.job_submit(type="noop", payload={}, delay=600)
    broker_view.worker_announce(hostname="w1@host", ttl=10)

    text = Client().get("/metrics").content.decode()

    for line in (
        'queue_depth{queue="low"} 1.0',
        'queue_depth{queue="high"} 0.0',
        "jobs_scheduled 1.0",
        "dead_letter_size 0.0",
        "workers_online 1.0",
        'jobs_submitted_total{queue="low",type="noop"}',
        "django_http_requests_total_by_method_total",
    ):
        assert line in text, line
    latency = {
        line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines() if line.startswith("queue_latency_")
    }
    assert 30 <= latency["low"] < 40 and latency["high"] == latency["medium"] == 0


def test_every_request_is_counted_by_method_and_status_and_timed_by_view():
    latency = "django_http_requests_latency_seconds_by_view_method_count"

    def now() -> dict[str, float]:
        return {
            "GET": sample("django_http_requests_total_by_method_total", method="GET"),
            "other": sample("django_http_requests_total_by_method_total", method="other"),
            "404": sample("django_http_responses_total_by_status_total", status="404"),
            "healthz": sample(latency, view="healthz", method="GET"),
        }

    before = now()
    client = Client()
    client.get("/healthz")
    client.get("/no-such-page")
    client.generic("BREW", "/healthz")

    assert delta(before, now()) == {"GET": 2, "other": 1, "404": 1, "healthz": 1}


def test_the_web_app_exports_the_submission_counter_of_every_type_and_queue_from_the_start(broker):
    from jobs.rules import registry

    text = Client().get("/metrics").content.decode()

    for job_type in registry.names():
        for queue in states.QUEUES:
            assert f'jobs_submitted_total{{queue="{queue}",type="{job_type}"}}' in text, (job_type, queue)


def test_healthz_with_workers_needs_a_worker_heartbeat(broker):
    client = Client()
    missing = client.get("/healthz", {"workers": "1"})
    assert missing.status_code == 503
    assert missing.json()["failed"] == ["workers"]
    assert client.get("/healthz").status_code == 200

    broker_view.worker_announce(hostname="w1@host", ttl=10)
    present = client.get("/healthz", {"workers": "1"})
    assert present.status_code == 200
    assert present.json()["checks"]["workers"] == "ok: 1 online"


def test_healthz_with_workers_reads_the_heartbeats_without_scanning_the_keyspace(broker):
    broker_view.worker_announce(hostname="w1@host", ttl=10)
    broker_view.worker_announce(hostname="w2@host", ttl=0)  # already stale
    broker_view.worker_announce(hostname="w3@host", ttl=10)
    broker_view.worker_withdraw(hostname="w3@host")
    broker.config_resetstat()

    present = Client().get("/healthz", {"workers": "1"})

    assert present.json()["checks"]["workers"] == "ok: 1 online"
    assert broker_view.workers_online() == ["w1@host"]
    assert not {"cmdstat_scan", "cmdstat_keys"} & set(broker.info("commandstats"))


def test_each_job_event_is_one_log_line_with_the_job_fields(caplog):
    caplog.set_level(logging.INFO, logger="jobqueue.jobs")
    job, _ = services.job_submit(type="noop", payload={})
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.jobs_succeed([services.Success(str(job.id), claim.serial, None, timezone.now())])

    events = [(r.getMessage(), r.outcome, r.attempt) for r in caplog.records if getattr(r, "job_id", "") == str(job.id)]
    assert events == [("job submitted", "queued", 0), ("job started", "started", 1), ("job succeeded", "succeeded", 1)]
    succeeded = caplog.records[-1]
    assert (succeeded.type, succeeded.queue) == ("noop", "medium") and succeeded.duration >= 0
