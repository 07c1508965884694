"""`make chaos`: random faults under a steady load for CHAOS_SECONDS (600 by default).

One fault at a time, every fault of the catalog once per round in a random order, with 10 to
20 s of load between them.
At the end every accepted job must be terminal as its handler says and none lost; each fault's
recovery (the seconds until every worker node started a job again) is measured, and the run is
written to docs/reliability.md. Not part of `make test` (marker `chaos`).
"""

import os
import random
import statistics
import time
from collections import defaultdict
from datetime import datetime

import pytest
from django.db import connections
from django.utils import timezone

from tests import servers

from . import catalog
from .conftest import WORKERS, check_outcome, first_start_per_node
from .load import Load

REPORT = servers.ROOT / "docs" / "reliability.md"


def seconds_until_all_nodes_served(stack, since: datetime, *, limit: float = 60) -> float | None:
    """Seconds from `since` until every worker node had started a job; None if not within `limit`."""
    nodes = {stack.node(name) for name in WORKERS}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        connections.close_all()
        try:
            served = first_start_per_node(since)
        except Exception:  # the database is still coming back: look again
            served = {}
        if nodes <= set(served):
            return max(served[node] for node in nodes)
        time.sleep(0.5)
    return None


@pytest.mark.chaos
@pytest.mark.timeout(7200)
def test_random_faults_lose_no_job(faults):
    duration = float(os.environ.get("CHAOS_SECONDS", "600"))
    seed = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    recoveries: dict[str, list[float]] = defaultdict(list)
    unrecovered: list[str] = []
    deck: list[str] = []
    started = time.monotonic()
    load = Load(faults.url, faults.token, run=f"chaos-{seed}", rate=10).start()
    try:
        while time.monotonic() - started < duration:
            time.sleep(rnd.uniform(10, 20))
            if not deck:  # every fault once per round, in a random order
                deck = rnd.sample(sorted(catalog.FAULTS), len(catalog.FAULTS))
            name = deck.pop()
            print(f"{time.monotonic() - started:7.1f}s fault {name}", flush=True)
            healed = catalog.FAULTS[name](faults, rnd)
            recovered = seconds_until_all_nodes_served(faults, healed)
            if recovered is None:
                unrecovered.append(name)
            recoveries[name].append(60.0 if recovered is None else recovered)
            print(f"{time.monotonic() - started:7.1f}s   recovered in {recovered}s", flush=True)
            faults.healthy()  # a process the fault did not kill must still be running
    finally:
        load.stop()
    connections.close_all()
    elapsed = time.monotonic() - started
    try:
        figures = check_outcome(faults, load, finish_within=300)
    except AssertionError as exc:
        write_report(seed=seed, elapsed=elapsed, result=f"FAILED: {exc}", figures=None, recoveries=recoveries)
        raise
    result = "passed: every accepted job ended as its handler says, none lost, no 500"
    if unrecovered:
        result = f"FAILED: worker nodes did not all serve again within 60 s after {unrecovered}"
    write_report(seed=seed, elapsed=elapsed, result=result, figures=figures, recoveries=recoveries)
    assert not unrecovered, result


def write_report(*, seed: int, elapsed: float, result: str, figures: dict | None, recoveries: dict) -> None:
    every = sorted(t for times in recoveries.values() for t in times)
    figures = figures or {"jobs": "?", "lost": "?", "ran_twice": "?", "answers": "?", "slowest_submit_s": "?"}
    lines = [
        "# Reliability: random faults under load",
        "",
        "Written by `make chaos` (tests/faults/test_chaos.py): one fault at a time, each fault of",
        "tests/faults/catalog.py once per round in a random order, 10 to 20 s apart, while 3 clients",
        "submit about 10 jobs per second over",
        "HTTP (with idempotency keys, retrying on 503) to a stack of PostgreSQL, Redis, an SMTP server,",
        "gunicorn, two prefork worker nodes, one threads node and a mover. Recovery: seconds from the end",
        "of a fault (service back, process started again) until every worker node had started a job.",
        "The stack runs with JOB_LEASE_SECONDS=8 and JOB_REDISPATCH_AFTER=3 (tests/faults/conftest.py).",
        "",
        f"Run of {timezone.now():%Y-%m-%d %H:%M} UTC, seed {seed} (`CHAOS_SEED`), {elapsed / 60:.1f} minutes, "
        f"{os.cpu_count()} cores. Result: {result}.",
        "",
        "| faults | jobs accepted | jobs lost | handlers that completed twice | recovery p50 | recovery max |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {len(every)} | {figures['jobs']} | {figures['lost']} | {figures['ran_twice']} | "
        f"{_seconds(statistics.median(every) if every else None)} | {_seconds(every[-1] if every else None)} |",
        "",
        "| fault | times | recovery p50 | recovery max |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(recoveries):
        times = sorted(recoveries[name])
        lines.append(f"| {name} | {len(times)} | {_seconds(statistics.median(times))} | {_seconds(times[-1])} |")
    lines += ["", f"HTTP answers: {figures['answers']}; slowest submit {figures['slowest_submit_s']} s.", ""]
    REPORT.write_text("\n".join(lines))


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"
