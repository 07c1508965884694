"""A worker node cut off from PostgreSQL (only) while it runs 20 jobs of 30 s: the other node runs
them to success, the two runs of each job overlap by less than lease + grace (the documented bound;
the fence keeps it near the grace), and the first node's late results are refused or its handlers
killed, and counted. Half of the handlers call ctx.check() and stop when fenced; the other half
never look, and the watchdog ends their processes after JOB_FENCE_GRACE.

Its own module: both worker nodes need 20 pool processes here.
"""

import time

from tests import servers

from . import history, scenario

LEASE, FENCE_GRACE = scenario.LEASE, scenario.FENCE_GRACE
CLUSTER_SETTINGS = scenario.FENCED_SETTINGS
CLUSTER_CONCURRENCY = 20
JOBS, SECONDS = 20, 30


def running_on(node: str) -> int:
    from django.db import close_old_connections

    from jobs.models import Job

    close_old_connections()
    return Job.objects.filter(type=scenario.TYPE, status="running", worker__startswith=f"{node}@").count()


def test_a_node_cut_from_postgresql_while_running_20_jobs_is_fenced(partitions):
    started = time.monotonic()
    scenario.fresh_history(partitions)
    partitions.processes["w2"].stop(timeout=15)  # w1 alone takes the jobs
    before = {**scenario.snapshot(partitions, ("web", "mover", "w1")), "w2": {}}
    watcher = history.PidWatcher(partitions.history_dir)
    watcher.start()
    ids = []
    for number in range(JOBS):
        status, body = scenario.submit(
            partitions, partitions.token, {"seconds": SECONDS, "check": number % 2 == 0, "fail": False}
        )
        assert status == 201, body
        ids.append(body["id"])
    servers.wait_for(lambda: running_on("w1") == JOBS, timeout=20, what=f"{JOBS} jobs running on w1", interval=0.2)
    partitions.start("w2")  # its counters start at zero: `before` has none for it
    partitions.cut("w1", "pg")
    cut_at = time.monotonic()

    statuses = scenario.wait_terminal(timeout=SECONDS + 25)
    assert statuses == {"succeeded": JOBS}, statuses
    partitions.heal("w1", "pg")
    servers.wait_for(lambda: not watcher.open, timeout=10, what="every run to end", interval=0.2)
    watcher.stop()

    found = history.load(partitions.history_dir)
    per_job = {job: max((s for a, b, s in history.overlaps(found) if a.job == job), default=0.0) for job in ids}
    longest = max(per_job.values())
    checked = [job for job, seconds in per_job.items() if seconds > 0]
    print(
        f"\nlongest overlap of two runs of a job: {longest:.2f}s (issue's bound lease + grace = "
        f"{LEASE + FENCE_GRACE}s; grace = {FENCE_GRACE}s); {len(checked)} jobs overlapped at all"
    )
    from jobs.models import JobAttempt

    finished_on = set(JobAttempt.objects.filter(job_id__in=ids, outcome="succeeded").values_list("worker", flat=True))
    assert {worker.split("@")[0] for worker in finished_on} == {"w2"}, finished_on
    first_runs = [run for run in found.runs if run.node == "w1"]
    assert len(first_runs) == JOBS and all(run.end is not None for run in first_runs), [str(r) for r in first_runs]
    assert longest <= LEASE + FENCE_GRACE, f"two runs overlapped {longest:.2f}s > lease + grace"

    # w1's late results: refused (its handlers that stopped, and so failed, or finished) or killed.
    grown: dict[str, dict[str, float]] = {}

    def counted() -> bool:
        grown.update(scenario.deltas(partitions, before, ("w1",)))
        return grown["w1"]["job_results_refused_total"] + grown["w1"]["job_attempts_killed_total"] >= JOBS

    try:
        servers.wait_for(counted, timeout=20, what="w1 to count its 20 fenced attempts", interval=0.5)
    finally:
        print("w1 counters:", {name: value for name, value in grown.get("w1", {}).items() if value})
    stopped = [run for run in first_runs if run.error and "AttemptFenced" in run.error]
    killed = [run for run in first_runs if run.gone]
    print(f"w1's runs: {len(stopped)} stopped at ctx.check(), {len(killed)} ended by the watchdog")
    assert len(stopped) == JOBS // 2 and len(killed) == JOBS // 2, [str(run) for run in first_runs]
    # Each attempt fenced once, each handler that did not stop killed once (a killed process not yet
    # reaped must not be fenced and killed again).
    assert grown["w1"]["job_attempts_fenced_total"] == JOBS, grown["w1"]
    assert grown["w1"]["job_attempts_killed_total"] == JOBS // 2, grown["w1"]

    final = scenario.collect_final(partitions, ids, before)
    anomalies = history.check(found, final, overlap_bound=FENCE_GRACE + 1.5)
    took = f"in {time.monotonic() - started:.1f}s ({time.monotonic() - cut_at:.1f}s after the cut)"
    print(history.summary(found, anomalies), took)
    assert not anomalies, history.report(anomalies)
