"""Each fault injected under a steady load; every accepted job must end as its handler says.

For every fault: no `500`, no submission lost or made twice, every job terminal (`succeeded`, or
`dead` where the handler says so), a handler run twice only when an attempt of its job was cut
short, and the time each worker node took to serve again (printed, and bounded where the
acceptance says so).
"""

import json
import time
from collections.abc import Callable
from datetime import datetime

import pytest
import redis
import requests
from django.db import close_old_connections, connections
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from jobs import services as job_services
from jobs.adapters import broker as broker_view
from jobs.adapters.dispatch import celery_app
from jobs.models import Job, JobAttempt
from jobs.rules.states import QUEUES

from . import catalog
from .conftest import WORKERS, Stack, check_outcome, first_start_per_node, report, wait_all_terminal
from .load import Load

SETTLE = 2.0  # seconds of load before the fault
AFTER = 3.0  # seconds of load at least after it
WORKERS_BACK_WITHIN = 15.0


def run_fault(stack: Stack, name: str, inject: Callable[[Stack], datetime], *, after: float = AFTER) -> dict:
    """Load, fault, more load until every worker node served again (or WORKERS_BACK_WITHIN passed);
    then the invariants. `inject` returns when the fault ended."""
    load = Load(stack.url, stack.token, run=name).start()
    try:
        time.sleep(SETTLE)
        healed_at = inject(stack)
        connections.close_all()  # the test's own connection may have been cut by the fault
        deadline = time.monotonic() + WORKERS_BACK_WITHIN + 1
        time.sleep(after)
        while len(first_start_per_node(healed_at)) < len(WORKERS) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        load.stop()
    figures = check_outcome(stack, load)
    figures["first_start_per_node_s"] = first_start_per_node(healed_at)
    report(name, figures)
    return figures


def workers_back(figures: dict, *, nodes: list[str], within: float = WORKERS_BACK_WITHIN) -> None:
    served = figures["first_start_per_node_s"]
    late = {node: served.get(node) for node in nodes if served.get(node) is None or served[node] > within}
    assert not late, f"worker nodes not serving within {within}s of the fault's end: {late} (all: {served})"


def all_nodes(stack: Stack) -> list[str]:
    return [stack.node(name) for name in WORKERS]


# (fault, seconds within which every worker node must serve again)
SERVICE_FAULTS = {
    "postgres-fast-restart": (catalog.postgres_fast_restart, WORKERS_BACK_WITHIN),
    "postgres-connections-cut": (catalog.postgres_connections_cut, 5),
    "redis-restart-empty": (catalog.redis_restart_empty, WORKERS_BACK_WITHIN),
    "redis-connections-cut": (catalog.redis_connections_cut, WORKERS_BACK_WITHIN),
    # Celery has had workers that stop consuming when the broker drops them twice within seconds.
    "redis-connections-cut-3x": (catalog.redis_connections_cut_3x, WORKERS_BACK_WITHIN),
    "redis-connections-half-open": (catalog.redis_connections_orphaned, WORKERS_BACK_WITHIN),
}


@pytest.mark.parametrize("name", SERVICE_FAULTS)
def test_every_worker_serves_again_after(faults, name):
    fault, within = SERVICE_FAULTS[name]

    figures = run_fault(faults, name, fault)

    workers_back(figures, nodes=all_nodes(faults), within=within)
    faults.healthy()


def test_postgres_down_for_10s(faults):
    during: dict[str, requests.Response] = {}

    def probe() -> None:
        time.sleep(2)
        headers = {"Authorization": f"Token {faults.token}"}
        during["health"] = requests.get(f"{faults.url}/healthz", timeout=10)
        during["submit"] = requests.post(
            f"{faults.url}/submit-job", json={"type": "noop", "payload": {}}, headers=headers, timeout=10
        )
        during["list"] = requests.get(f"{faults.url}/api/jobs/", headers=headers, timeout=10)

    figures = run_fault(faults, "postgres-down-10s", lambda stack: catalog.postgres_down(stack, during=probe))

    health = during["health"]
    assert health.status_code == 503 and "database" in health.json()["failed"], health.text
    for name in ("submit", "list"):
        answer = during[name]
        assert answer.status_code == 503, (name, answer.status_code, answer.text[:300])
        assert answer.headers["Retry-After"].isdigit() and "database" in answer.json()["detail"]
    assert figures["answers"].get("503", 0) > 0, "the load never saw the database down"
    workers_back(figures, nodes=all_nodes(faults))
    faults.healthy()


def test_redis_down_for_10s(faults):
    figures = run_fault(faults, "redis-down-10s", catalog.redis_down)

    assert figures["slowest_submit_s"] < 2.0, figures
    workers_back(figures, nodes=all_nodes(faults))
    faults.healthy()


def test_postgres_down_while_jobs_wait_on_a_limit(faults):
    # A per-key concurrency of 1 over 3 keys, 6 jobs each: most wait for their key's slot when the
    # database goes away; afterwards every job runs once (none retries: an attempt that finished
    # during the outage is written when the database is back, its lease run out or not), and each
    # key still runs one at a time.
    keys = [f"k{n}" for n in range(3)]
    ids = [
        str(job_services.job_submit(type="test.per_key", payload={"key": key, "ms": 300})[0].id)
        for _ in range(6)
        for key in keys
    ]
    time.sleep(1.0)

    catalog.postgres_down(faults)
    connections.close_all()
    statuses = wait_all_terminal(ids, timeout=120)

    assert set(statuses.values()) == {"succeeded"}, statuses
    # When each handler ran, by its own clock: an attempt's recorded start is taken just before its
    # claim, which may wait on the partition's lock until the slot frees.
    runs: dict[str, list[tuple]] = {}
    for result in Job.objects.filter(id__in=ids).values_list("result", flat=True):
        runs.setdefault(result["key"], []).append(tuple(result["ran"]))
    for key, intervals in runs.items():
        intervals.sort()
        overlapping = [(a, b) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1]]
        assert not overlapping, f"{key} ran two jobs at once: {overlapping}"
    faults.healthy()


def test_smtp_down_for_10s(faults):
    run_fault(faults, "smtp-down-10s", catalog.smtp_down)

    faults.healthy()


def test_mover_killed(faults):
    run_fault(faults, "mover-kill-9", catalog.mover_killed)


def test_web_killed(faults):
    run_fault(faults, "web-kill-9", catalog.web_killed)


# --- worker faults: jobs caught mid-run ----------------------------------------------------

LONG_MS = 4000


def long_jobs_running_on(stack: Stack, name: str) -> list[tuple[str, int]]:
    """Submit long jobs, one every few tenths of a second, until some run on node `name`; (job id,
    serial) of those that do. The other nodes' free slots take the first ones: which node takes a
    job is the broker's choice, so a fixed number of jobs may all land elsewhere."""
    node = stack.node(name)
    ids: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(ids) < 16:
            job, _ = job_services.job_submit(type="test.effect", payload={"ms": LONG_MS}, priority="high")
            ids.append(str(job.id))
        close_old_connections()
        running = list(
            JobAttempt.objects.filter(job_id__in=ids, worker=node, outcome="running").values_list("job_id", "number")
        )
        if running:
            return [(str(job_id), number) for job_id, number in running]
        time.sleep(0.3)
    ran_on = sorted(JobAttempt.objects.filter(job_id__in=ids).values_list("worker", flat=True))
    raise AssertionError(f"none of {len(ids)} long jobs started on {node}; they ran on: {ran_on}")


def rerun_delays(caught: list[tuple[str, int]], since: datetime) -> dict[str, float | None]:
    """Seconds from `since` to the next attempt of each caught job (None: not run again yet)."""
    delays = {}
    for job_id, number in caught:
        following = JobAttempt.objects.filter(job_id=job_id, number__gt=number).order_by("number").first()
        delays[job_id] = None if following is None else round((following.started_at - since).total_seconds(), 3)
    return delays


def test_worker_node_killed_with_sigkill(faults):
    # The lease (8 s) must run out before its jobs run again: load goes on until it did.
    figures = run_fault(faults, "worker-node-kill-9", catalog.worker_node_killed, after=10)

    workers_back(figures, nodes=all_nodes(faults))


def jobs_caught_on_w1_run_again_within_5s(faults, name: str, fault: Callable[[Stack, str], datetime]) -> list:
    """Inject `fault` into node w1 while long jobs run there; those jobs must run again within
    5 s of it. Returns (job id, serial) of the attempts it caught."""
    caught: list[tuple[str, int]] = []
    injected: dict[str, datetime] = {}

    def inject(stack: Stack) -> datetime:
        caught.extend(long_jobs_running_on(stack, "w1"))
        injected["at"] = timezone.now()
        return fault(stack, "w1")

    run_fault(faults, name, inject)

    delays = rerun_delays(caught, injected["at"])
    report(name, {"caught_jobs_run_again_after_s": sorted(delays.values(), key=str)})
    assert all(delay is not None and delay < 5 for delay in delays.values()), delays
    return caught


def test_pool_process_killed_runs_its_job_again_at_once(faults):
    caught = jobs_caught_on_w1_run_again_within_5s(faults, "pool-process-kill-9", catalog.pool_processes_killed)

    for job_id, number in caught:
        assert JobAttempt.objects.get(job_id=job_id, number=number).outcome == "lost"
    faults.healthy()


def test_sigterm_to_a_worker_main_process_is_graceful(faults):
    figures = run_fault(faults, "worker-sigterm-main", catalog.worker_sigterm_main)

    workers_back(figures, nodes=all_nodes(faults))


def test_sigterm_to_a_worker_process_group_runs_its_jobs_again_within_5s_elsewhere(faults):
    caught = jobs_caught_on_w1_run_again_within_5s(faults, "worker-sigterm-group", catalog.worker_sigterm_group)

    reruns = JobAttempt.objects.filter(job_id__in=[job_id for job_id, _ in caught], outcome="succeeded")
    assert faults.node("w1") not in set(reruns.values_list("worker", flat=True))


# --- the broker losing its data under a backlog, the database turning read-only -----------------

BACKLOG = 5000
MESSAGES_BACK_WITHIN = 30.0


def consumers(stack: Stack, action: str, queue: str) -> None:
    """Stop (`cancel_consumer`) or start again (`add_consumer`) every worker node's consumption
    of `queue`, through Celery's remote control, until each node has answered."""
    nodes = all_nodes(stack)
    deadline = time.monotonic() + 30
    while True:
        try:  # a connection of its own each time: those of the pool may have died with Redis
            with celery_app().connection_for_write() as connection:
                control = getattr(celery_app().control, action)
                replies = control(queue, destination=nodes, reply=True, timeout=3, connection=connection)
        except (redis.ConnectionError, OSError, KombuOperationalError):
            replies = []
        answered = {node for reply in replies or [] for node in reply}
        if answered >= set(nodes):
            return
        assert time.monotonic() < deadline, f"{action} {queue}: only {sorted(answered)} of {nodes} answered"
        nodes = [node for node in nodes if node not in answered]


def without_message(client: redis.Redis, job_ids: list[str]) -> list[str]:
    """Those of `job_ids` still queued in the database with no message in Redis (waiting or in flight)."""
    pipe = client.pipeline()
    for queue in QUEUES:
        pipe.lrange(broker_view.key(queue), 0, -1)
    pipe.hvals(broker_view.key(broker_view.UNACKED))
    *lists, unacked = pipe.execute()
    held = {broker_view.job_id_of(raw) for entries in lists for raw in entries}
    held |= {broker_view.job_id_of(json.loads(raw)[0]) for raw in unacked}
    close_old_connections()
    queued = {str(pk) for pk in Job.objects.filter(pk__in=job_ids, status="queued").values_list("pk", flat=True)}
    return [job_id for job_id in job_ids if job_id in queued and job_id not in held]


def test_redis_restarted_empty_under_a_backlog_every_job_has_its_message_again_within_30s(faults):
    # Given a backlog of BACKLOG jobs in the low queue, which no worker takes for now, and clients
    # that keep submitting to every queue (low included, so its list is never empty for long).
    client = redis.Redis(host="127.0.0.1", port=faults.redis.port)
    consumers(faults, "cancel_consumer", "low")
    try:
        backlog = []
        for _ in range(BACKLOG // 1000):
            submitted = job_services.jobs_submit_many(
                submissions=[{"type": "noop", "payload": {}, "priority": "low"}] * 1000
            )
            backlog += [str(job.id) for job, _ in submitted]
        load = Load(faults.url, faults.token, run="redis-restart-empty-backlog").start()
        try:
            time.sleep(SETTLE)
            assert client.llen(broker_view.key("low")) >= BACKLOG
            before = backlog + [job["id"] for job in dict(load.accepted).values()]

            # When Redis restarts empty while the clients go on.
            started = time.monotonic()
            catalog.redis_restart_empty(faults)
            missing = before
            while missing and time.monotonic() - started < MESSAGES_BACK_WITHIN + 5:
                time.sleep(0.5)
                missing = without_message(client, missing)
            back_after = round(time.monotonic() - started, 1)
            report("redis-restart-empty-backlog", {"jobs_before": len(before), "messages_back_after_s": back_after})

            # Then every job accepted before it has its message again (or ran) within 30 s.
            assert not missing, f"{len(missing)} jobs without a message {back_after}s after the restart: {missing[:3]}"
            assert back_after <= MESSAGES_BACK_WITHIN
        finally:
            load.stop()
    finally:
        consumers(faults, "add_consumer", "low")
        client.close()
    # And none is lost: every one runs.
    connections.close_all()
    check_outcome(faults, load, finish_within=120)
    assert set(wait_all_terminal(backlog, timeout=120).values()) == {"succeeded"}
    faults.healthy()


def test_postgres_read_only_and_back(faults):
    # A failover onto a read-only node and back: sessions cut each time, new ones read-only
    # meanwhile. Clients get 503s, workers wait, nothing is lost or dead-lettered.
    def read_only_for_a_while(stack: Stack) -> datetime:
        stack.postgres.read_only(True)
        try:
            time.sleep(catalog.OUTAGE)
        finally:
            stack.postgres.read_only(False)
        return timezone.now()

    figures = run_fault(faults, "postgres-read-only", read_only_for_a_while)

    assert figures["answers"].get("503", 0) > 0, "the load never saw the database read-only"
    workers_back(figures, nodes=all_nodes(faults))
    faults.healthy()
