"""The fence with real worker nodes: an attempt that lost its lease is told, and ended if it does
not stop, so two runs of one job overlap by at most JOB_FENCE_GRACE plus a watchdog step and the
clock difference between nodes (tasks/fence.py, docs/explanation/delivery-guarantees.md)."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from jobs import services
from jobs.models import Job, JobAttempt
from tests import native, servers

from .conftest import wait_until_terminal

LEASE = 4
GRACE = 2
FAST = {
    "JOB_LEASE_SECONDS": str(LEASE),
    "JOB_LEASE_RENEW_SECONDS": "1",
    "JOB_LOST_CHECK_SECONDS": "0.5",
    "JOB_FENCE_GRACE": str(GRACE),
    "JOB_FENCE_CHECK_SECONDS": "0.5",
}
# The documented bound on two runs' overlap (tasks/fence.py): the grace, one look of the watchdog
# (0.25 s), and slack for a loaded machine; the nodes share one clock here.
OVERLAP_BOUND = GRACE + 1.5


@pytest.fixture(scope="session")
def hold_gil_path() -> str:
    return native.hold_gil_dir()


def start_nodes(start_worker, start_mover, env: dict) -> dict[str, int]:
    """Two prefork nodes of one pool process each, and a mover; node name -> metrics port."""
    ports = {}
    for node in ("w1", "w2"):
        ports[node] = servers.free_port()
        node_env = {**env, "JQ_HISTORY_NODE": node, "JOB_WORKER_METRICS_PORT": str(ports[node])}
        start_worker(node, concurrency=1, env=node_env)
    start_mover(env=env)
    return ports


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def first(path: Path, **match) -> dict | None:
    return next((line for line in lines(path) if match.items() <= line.items()), None)


def wait_for_line(path: Path, timeout: float, **match) -> dict:
    servers.wait_for(lambda: first(path, **match) is not None, timeout=timeout, what=f"a line {match} in {path}")
    return first(path, **match)


class DeathWatch:
    """Notes (by time.time()) when a process ends: gone, or a zombie its parent has not reaped yet."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.died_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)
        self.died_at = time.time()

    def wait(self, timeout: float) -> float:
        self._thread.join(timeout)
        assert self.died_at is not None, f"process {self.pid} still runs after {timeout}s"
        return self.died_at


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a worker node's samples of `name` with these labels."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def attempts_of(job_id: str) -> list[JobAttempt]:
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))


def test_a_handler_holding_the_gil_past_its_lease_is_killed_within_the_grace(
    start_worker, start_mover, hold_gil_path, tmp_path
):
    pythonpath = os.pathsep.join(filter(None, [hold_gil_path, os.environ.get("PYTHONPATH")]))
    ports = start_nodes(start_worker, start_mover, {**FAST, "PYTHONPATH": pythonpath})
    runs = tmp_path / "runs.jsonl"
    job, _ = services.job_submit(type="test.hold_gil", payload={"seconds": 3 * LEASE, "file": str(runs)})
    job_id = str(job.id)

    first_run = wait_for_line(runs, timeout=30, e="start", serial=1)
    death = DeathWatch(first_run["pid"])
    statuses = wait_until_terminal([job_id], timeout=60)
    died_at = death.wait(timeout=3 * LEASE)

    second_run = first(runs, e="start", serial=2)
    assert second_run is not None and first(runs, e="end", serial=2) is not None
    assert first(runs, e="end", serial=1) is None, "the GIL holder ran to its end: it was never stopped"
    # It never renewed its lease (its keeper thread could not run): its last renewal is its claim.
    claimed_at = attempts_of(job_id)[0].started_at.timestamp()
    killed_after = died_at - claimed_at
    overlap = max(0.0, died_at - second_run["t"])
    print(
        f"attempt 1 ({first_run['node']}, pid {first_run['pid']}) died {killed_after:.2f}s after its claim "
        f"(lease {LEASE}s + grace {GRACE}s); attempt 2 ({second_run['node']}) started "
        f"{second_run['t'] - claimed_at:.2f}s after it; overlap {overlap:.2f}s (bound {OVERLAP_BOUND}s)"
    )
    assert killed_after <= LEASE + GRACE + 1
    assert overlap <= OVERLAP_BOUND

    assert statuses[job_id] == "succeeded"
    attempts = attempts_of(job_id)
    assert [a.outcome for a in attempts] == ["lost", "succeeded"]
    assert Job.objects.get(pk=job_id).result == {"attempt": 2}
    port = ports[first_run["node"]]
    servers.wait_for(
        lambda: metric(port, "job_attempts_killed_total") >= 1, timeout=10, what="the kill in the node's metrics"
    )
    time.sleep(2 * GRACE)  # the watchdog's next looks, the dead process reaped: nothing more is counted
    fenced, killed = metric(port, "job_attempts_fenced_total"), metric(port, "job_attempts_killed_total")
    print(f"{first_run['node']}: fenced {fenced:.0f}, killed {killed:.0f}")
    assert metric(port, "job_attempts_fenced_total", reason="lease_expired") >= 1
    assert (fenced, killed) == (1, 1)


def test_a_handler_frozen_past_its_lease_learns_it_was_fenced_when_it_resumes(start_worker, start_mover, tmp_path):
    # A grace longer than the freeze: the watchdog fences the frozen attempt but leaves it to stop
    # by itself, which it does at its next ctx.check() once it runs again.
    freeze = 2 * LEASE
    ports = start_nodes(start_worker, start_mover, {**FAST, "JOB_FENCE_GRACE": str(freeze + 20)})
    runs = tmp_path / "runs.jsonl"
    job, _ = services.job_submit(type="test.fenceable", payload={"seconds": 3, "file": str(runs)})
    job_id = str(job.id)

    first_run = wait_for_line(runs, timeout=30, e="tick", serial=1)
    pool_process = psutil.Process(first_run["pid"])
    pool_process.send_signal(signal.SIGSTOP)  # the pool process alone: its node's main process runs on
    try:
        wait_for_line(runs, timeout=3 * LEASE, e="start", serial=2)
        time.sleep(max(0.0, first_run["t"] + freeze - time.time()))
    finally:
        resumed_at = time.time()
        pool_process.send_signal(signal.SIGCONT)
    ended = wait_for_line(runs, timeout=10, e="end", serial=1)
    wait_until_terminal([job_id], timeout=30)

    told_after = ended["t"] - resumed_at
    late_ticks = [run for run in lines(runs) if run["e"] == "tick" and run["serial"] == 1 and run["t"] > resumed_at]
    print(f"attempt 1 learnt it was fenced {told_after:.3f}s after it resumed ({len(late_ticks)} ticks in between)")
    assert ended["ok"] is False and ended["error"].startswith("AttemptFenced: lease lost")
    assert told_after <= 1.0
    assert pool_process.is_running(), "the frozen attempt stopped by itself: nothing had to kill it"

    attempts = attempts_of(job_id)
    assert Job.objects.get(pk=job_id).status == "succeeded"
    assert [a.outcome for a in attempts] == ["lost", "succeeded"]
    port = ports[first_run["node"]]
    servers.wait_for(
        lambda: metric(port, "job_results_refused_total", outcome="failed") >= 1,
        timeout=10,
        what="the refused failure in the node's metrics",
    )
    assert metric(port, "job_attempts_fenced_total", reason="lease_expired") >= 1
    assert metric(port, "job_attempts_killed_total") == 0
