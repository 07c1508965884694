"""Each of the five link cuts under load, then the history checker (the short suite, run in CI);
and `partitions_long`: random cuts for JQ_PARTITION_SECONDS (make partitions).

A cut lasts longer than the lease (4 s here), so the mover hands the cut-off node's jobs to the
other node while the first may still run them: the fence must stop those runs within
JOB_FENCE_GRACE, and the checker finds every overlap longer than that (plus a look of the
watchdog and the clocks' difference), every lost or doubled job, and counters that disagree.
"""

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import servers

from . import history, scenario

FENCE_GRACE = scenario.FENCE_GRACE
CLUSTER_SETTINGS = scenario.FENCED_SETTINGS
CLUSTER_CONCURRENCY = 4
OVERLAP_BOUND = FENCE_GRACE + 1.5

# name -> (cut, heal) on the cluster
FAULTS = {
    "w1-pg": (lambda c: c.cut("w1", "pg"), lambda c: c.heal("w1", "pg")),
    "w1-redis": (lambda c: c.cut("w1", "redis"), lambda c: c.heal("w1", "redis")),
    "mover-pg": (lambda c: c.cut("mover", "pg"), lambda c: c.heal("mover", "pg")),
    "w2-node": (lambda c: c.cut_node("w2"), lambda c: c.heal("w2")),
    "web-redis": (lambda c: c.cut("web", "redis"), lambda c: c.heal("web", "redis")),
}


class Run:
    """One scenario: history and counters from zero, the pid watcher and the load running."""

    def __init__(self, cluster, *, seed: int, interval: float = 0.5, long_share: float = 0.0) -> None:
        self.cluster = cluster
        scenario.fresh_history(cluster)
        self.before = scenario.snapshot(cluster)
        self.watcher = history.PidWatcher(cluster.history_dir)
        self.watcher.start()
        self.load = scenario.Load(cluster, cluster.token, seed=seed, interval=interval, long_share=long_share)
        self.load.start()

    def finish(self, *, terminal_timeout: float = 60):
        """Stops the load, waits for every job to end and every run to close, runs the checker."""
        self.cluster.heal_all()
        self.load.stop()
        statuses = scenario.wait_terminal(terminal_timeout)
        servers.wait_for(
            lambda: not self.watcher.open, timeout=OVERLAP_BOUND + 10, what="every run to end", interval=0.2
        )
        self.watcher.stop()
        found, final, anomalies = scenario.check(self.cluster, self.before, overlap_bound=OVERLAP_BOUND)
        print(f"submits {dict(self.load.answers)}, cancels {dict(self.load.cancels)}, jobs {dict(statuses)}")
        print("counters:", {name: value for name, value in final.metrics.items() if value})
        print("runs that did not end ok:", dict(Counter((r.error or "").split(":")[0] for r in found.runs if not r.ok)))
        for r in found.runs:
            if not r.ok and not (r.error or "").startswith("RuntimeError"):
                cancelled = " (a job the harness cancelled)" if r.job in found.cancels else ""
                print(f"  {r}: {r.error}{cancelled}")
        return found, final, anomalies


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_cut_under_load_breaks_no_guarantee(partitions, fault):
    cut, heal = FAULTS[fault]
    started = time.monotonic()
    run = Run(partitions, seed=sorted(FAULTS).index(fault))
    for number in range(4):  # running through the cut and past the lease: the fence has work
        scenario.submit(partitions, partitions.token, {"seconds": 10, "check": number % 2 == 0, "fail": False})
    time.sleep(3)  # jobs running on both nodes
    cut(partitions)
    time.sleep(9)  # longer than the lease (4 s) and the grace (2 s)
    heal(partitions)
    time.sleep(2)  # submits after the heal
    found, final, anomalies = run.finish()
    print(f"{fault}: {time.monotonic() - started:.1f}s")
    assert run.load.answers[201] >= 10, f"too few submits accepted to test anything: {dict(run.load.answers)}"
    assert found.runs, "no handler ran"
    assert not anomalies, history.report(anomalies)


# --- the long run ---------------------------------------------------------------------------


@pytest.mark.partitions_long
@pytest.mark.timeout(int(os.environ.get("JQ_PARTITION_SECONDS", "600")) + 300)
def test_random_cuts_for_minutes_break_no_guarantee(partitions):
    seconds = float(os.environ.get("JQ_PARTITION_SECONDS", "600"))
    seed = int(os.environ.get("JQ_PARTITION_SEED", str(int(time.time()))))
    chooser = random.Random(seed)
    run = Run(partitions, seed=seed, long_share=0.05)
    injected: Counter = Counter()
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        time.sleep(min(chooser.uniform(2, 8), max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            break
        kind = chooser.choice(sorted(FAULTS))
        cut, heal = FAULTS[kind]
        cut(partitions)
        injected[kind] += 1
        time.sleep(min(chooser.uniform(3, 15), max(0.5, deadline - time.monotonic())))
        heal(partitions)
    found, final, anomalies = run.finish(terminal_timeout=120)
    overlaps = history.overlaps(found)
    table = {
        "seconds": seconds,
        "seed": seed,
        "faults": dict(sorted(injected.items())),
        "faults_total": sum(injected.values()),
        "jobs_accepted": len(found.accepted),
        "runs": len(found.runs),
        "cancels": len(found.cancels),
        "jobs_by_status": dict(Counter(state.status for state in final.jobs.values())),
        "fenced": final.metrics.get("job_attempts_fenced_total", 0),
        "killed": final.metrics.get("job_attempts_killed_total", 0),
        "refused": final.metrics.get("job_results_refused_total", 0),
        "max_overlap_seconds": round(max((s for _, _, s in overlaps), default=0.0), 3),
        "overlap_bound_seconds": OVERLAP_BOUND,
        "anomalies": dict(Counter(anomaly.kind for anomaly in anomalies)),
        "anomaly_list": [str(anomaly) for anomaly in anomalies],
    }
    out = Path(servers.ROOT, "test-artifacts", "partitions-long.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(table, indent=2) + "\n")
    print(format_table(table))
    print(f"written to {out}")
    assert not anomalies, history.report(anomalies)


def format_table(table: dict) -> str:
    rows = [("faults injected", table["faults_total"])]
    rows += [(f"  {kind}", count) for kind, count in table["faults"].items()]
    rows += [
        ("jobs accepted", table["jobs_accepted"]),
        ("handler runs", table["runs"]),
        ("cancels", table["cancels"]),
        ("jobs by status", table["jobs_by_status"]),
        ("attempts fenced", table["fenced"]),
        ("pool processes killed", table["killed"]),
        ("results refused", table["refused"]),
        ("max overlap (s)", f"{table['max_overlap_seconds']} (bound {table['overlap_bound_seconds']})"),
        ("anomalies", table["anomalies"] or 0),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
