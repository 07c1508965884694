"""SPEC §5 metrics through a real Prometheus: web, worker nodes and the mover, and the shipped dashboard."""

import json
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import pytest
import requests

from jobs.models import Job, JobAttempt
from tests import servers
from tests.servers import PrometheusServer, wait_for

from .conftest import DEPLOY, wait_until_terminal

pytestmark = pytest.mark.timeout(900)

FAST_RECOVERY = {"JOB_LEASE_SECONDS": "3", "JOB_LEASE_RENEW_SECONDS": "1", "JOB_LOST_CHECK_SECONDS": "1"}
GRAFANA_VARIABLES = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")


@dataclass(frozen=True)
class AtLeast:
    minimum: float

    def __call__(self, value: float) -> bool:
        return value >= self.minimum


Expected = float | Callable[[float], bool]


def value_of(prometheus: PrometheusServer, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def wait_for_values(prometheus: PrometheusServer, expected: dict[str, Expected], timeout: float = 30) -> None:
    """Poll Prometheus until every expression has its expected value (scrapes come every second)."""
    deadline = time.monotonic() + timeout
    while True:
        actual = {expr: value_of(prometheus, expr) for expr in expected}
        wrong = {
            expr: (actual[expr], want)
            for expr, want in expected.items()
            if actual[expr] is None or not (want(actual[expr]) if callable(want) else abs(actual[expr] - want) < 1e-9)
        }
        if not wrong:
            return
        if time.monotonic() > deadline:
            lines = [f"  {expr}: got {got}, want {want}" for expr, (got, want) in wrong.items()]
            raise AssertionError(f"Prometheus disagrees after {timeout}s:\n" + "\n".join(lines))
        time.sleep(0.5)


def submit(web: str, token: str, job_type: str, payload: dict | None = None, **options) -> str:
    body = {"type": job_type, "payload": payload or {}, **options}
    response = requests.post(f"{web}/submit-job", json=body, headers={"Authorization": f"Token {token}"}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def host(url: str) -> str:
    return url.removeprefix("http://")


def kill_pool_process(worker: servers.Process) -> None:
    """kill -9 the one pool process of a `-c 1` worker (its main process replaces it)."""
    [child] = psutil.Process(worker.process.pid).children()
    child.send_signal(signal.SIGKILL)


def expectations_from_the_database(ids: list[str]) -> dict[str, Expected]:
    attempts = JobAttempt.objects.filter(job_id__in=ids)
    succeeded = attempts.filter(outcome="succeeded").count()
    failed = attempts.filter(outcome__in=("failed", "lost")).count()
    lost = attempts.filter(outcome="lost").count()
    # The killed attempt's; on a loaded machine a lease can also run out under another job.
    lost_slow = attempts.filter(outcome="lost", job__type="test.slow_first").count()
    dead = Job.objects.filter(pk__in=ids, status="dead").count()
    return {
        "sum(jobs_submitted_total)": len(ids),
        "sum(jobs_processed_total)": succeeded,
        "sum(jobs_processed_total{job='worker'})": succeeded,
        "sum(jobs_failed_total)": failed,
        # Seen by the worker's main process as the pool process dies, or by the mover when the lease ends.
        "sum(jobs_failed_total{type='test.slow_first'})": lost_slow,
        # Lost attempts have no duration: their end was not seen.
        "sum(job_processing_duration_seconds_count)": succeeded + failed - lost,
        "sum(job_processing_duration_seconds_bucket{le='+Inf'})": succeeded + failed - lost,
        "sum(jobs_retried_total)": failed - dead,
        "sum(jobs_dead_lettered_total)": dead,
        "dead_letter_size": dead,
    }


def test_job_and_system_metrics_reach_prometheus_from_web_workers_and_mover(
    start_web, start_worker, start_mover, start_prometheus, make_user
):
    ports = {name: servers.free_port() for name in ("w1", "w2", "mover")}
    web = start_web()
    start_mover(env={**FAST_RECOVERY, "JOB_MOVER_METRICS_PORT": str(ports["mover"])})
    targets = {"web": [host(web)], "worker": [f"127.0.0.1:{ports['w1']}", f"127.0.0.1:{ports['w2']}"]}
    prometheus = start_prometheus({**targets, "mover": [f"127.0.0.1:{ports['mover']}"]})
    _, token = make_user()

    # Given a job waiting in `low` with no worker running, and one scheduled for later
    ids = [submit(web, token, "test.sleep", {"ms": 5}, priority="low")]
    ids.append(submit(web, token, "test.sleep", delay=3600))
    wait_for_values(
        prometheus,
        {
            "queue_depth{queue='low'}": 1,
            "queue_latency_seconds{queue='low'}": AtLeast(0.5),
            "jobs_scheduled": 1,
            "workers_online": 0,
            # Series exist from the start, at 0, for every job type and queue: no event yet.
            "sum(jobs_failed_total{job='mover'})": 0,
            "count(jobs_failed_total{job='mover', type='noop'})": 3,
            "count(jobs_submitted_total{job='web', type='noop'})": 3,
        },
    )

    # When a worker's pool process is killed during a job (its attempt is lost, the job runs again) ...
    w2 = start_worker("w2", concurrency=1, env={**FAST_RECOVERY, "JOB_WORKER_METRICS_PORT": str(ports["w2"])})
    lost = submit(web, token, "test.slow_first", {"seconds": 30}, priority="high")
    ids.append(lost)
    wait_for(lambda: Job.objects.filter(pk=lost, status="running").exists(), timeout=30, what="the slow job to run")
    kill_pool_process(w2)
    # ... and two workers run successes, retried and dead jobs, and a job stopped by the hard time limit
    start_worker("w1", concurrency=2, env={**FAST_RECOVERY, "JOB_WORKER_METRICS_PORT": str(ports["w1"])})
    ids += [submit(web, token, "test.sleep", {"ms": 20}, priority="high") for _ in range(4)]
    ids += [submit(web, token, "test.sleep", {"ms": 20}) for _ in range(2)]
    ids.append(submit(web, token, "test.flaky", {"fail_times": 2}))
    ids.append(submit(web, token, "test.fail", {"fail": True}, max_retries=1))
    ids.append(submit(web, token, "test.stubborn"))
    wait_until_terminal([job_id for job_id in ids if job_id != ids[1]], timeout=90)

    # Then Prometheus sees what the database says happened
    assert [a.outcome for a in JobAttempt.objects.filter(job_id=lost).order_by("number")] == ["lost", "succeeded"]
    wait_for_values(
        prometheus,
        {
            **expectations_from_the_database(ids),
            "sum(jobs_processed_total{type='test.sleep', queue='high'})": 4,
            # Recorded by the worker's main process after the hard time limit killed the pool process.
            "sum(jobs_failed_total{type='test.stubborn'})": 1,
            "sum(job_processing_duration_seconds_sum{type='test.stubborn'})": AtLeast(5),
            "sum(job_processing_duration_seconds_sum{type='test.sleep'})": AtLeast(6 * 0.02),
            "sum(queue_depth)": 0,
            "count(queue_depth)": 3,
            "max(queue_latency_seconds)": 0,
            "jobs_scheduled": 1,
            "workers_online": 2,
            "count(up == 1)": 4,
            # A type no job of which ran: at 0 on both workers, in each queue.
            "sum(jobs_processed_total{type='noop'})": 0,
            "count(jobs_processed_total{job='worker', type='noop'})": 6,
            "count(job_processing_duration_seconds_count{job='worker', type='noop'})": 6,
        },
    )
    assert_dashboard_queries_return_data(prometheus)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel of the shipped Grafana dashboards."""
    queries = []
    for path in sorted((DEPLOY / "grafana").rglob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            queries += [(panel["title"], target["expr"]) for target in panel.get("targets", []) if target.get("expr")]
    return queries


def assert_dashboard_queries_return_data(prometheus: PrometheusServer) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10, f"the dashboard has only {len(queries)} queries"
    empty = []
    for title, expr in queries:
        promql = GRAFANA_VARIABLES.sub("1m", expr)
        if not prometheus.query(promql):
            empty.append(f"{title}: {promql}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def worker_health(port: int) -> tuple[int, dict]:
    response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return response.status_code, response.json()


def web_health_with_workers(web: str) -> tuple[int, dict]:
    response = requests.get(f"{web}/healthz", params={"workers": "1"}, timeout=10)
    return response.status_code, response.json()


def test_a_worker_whose_event_loop_stops_fails_its_liveness_check_and_leaves_workers_online(start_web, start_worker):
    web = start_web()
    status, body = web_health_with_workers(web)
    assert (status, body["failed"]) == (503, ["workers"])
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"

    # Given a worker whose loop is blocked by a running job (the solo pool runs jobs in its loop)
    port = servers.free_port()
    liveness = {"JOB_WORKER_METRICS_PORT": str(port), "JOB_LIVENESS_SECONDS": "2"}
    liveness["JOB_WORKER_HEARTBEAT_SECONDS"] = "0.5"
    start_worker("solo", pool="solo", env=liveness)
    wait_for(lambda: worker_health(port)[0] == 200, timeout=10, what="the worker's liveness check")
    wait_for(lambda: web_health_with_workers(web)[0] == 200, timeout=10, what="the worker's heartbeat")

    from jobs import services as job_services

    job, _ = job_services.job_submit(type="test.sleep", payload={"ms": 6000})

    # Then it is reported stuck while the loop does not turn, and well again afterwards
    wait_for(lambda: worker_health(port)[0] == 503, timeout=10, what="the liveness check to fail")
    assert worker_health(port)[1]["status"] == "stuck"
    wait_for(lambda: web_health_with_workers(web)[0] == 503, timeout=10, what="the heartbeat to expire")
    wait_until_terminal([job.id], timeout=30)
    wait_for(lambda: worker_health(port)[0] == 200, timeout=10, what="the liveness check to recover")
    wait_for(lambda: web_health_with_workers(web)[0] == 200, timeout=10, what="the heartbeat to come back")
    exported = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'jobs_processed_total{queue="medium",type="test.sleep"} 1.0' in exported
