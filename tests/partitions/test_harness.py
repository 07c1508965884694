"""The partition harness itself: jobs run across the namespaces, and a cut drops exactly one link."""

import time

from tests import servers


def wait_status(job_id: str, statuses: set[str], *, timeout: float) -> str:
    from django.db import close_old_connections

    from jobs.models import Job

    found = {}

    def reached() -> bool:
        close_old_connections()
        found["status"] = Job.objects.values_list("status", flat=True).get(pk=job_id)
        return found["status"] in statuses

    try:
        servers.wait_for(reached, timeout=timeout, what=f"job {job_id} to reach {statuses}", interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; it is {found.get('status')}") from None
    return found["status"]


def test_a_job_runs_across_namespaces_and_a_cut_drops_one_link(partitions):
    from jobs.models import JobAttempt

    job = partitions.submit(partitions.token, "test.sleep", {"ms": 200})
    assert wait_status(job["id"], {"succeeded", "dead", "cancelled"}, timeout=30) == "succeeded"
    workers = list(JobAttempt.objects.filter(job_id=job["id"]).values_list("worker", flat=True))
    assert len(workers) == 1 and workers[0].split("@")[0] in {"w1", "w2"}, workers
    status, body = partitions.api("GET", f"/job-status/{job['id']}", token=partitions.token)
    assert (status, body["status"]) == (200, "succeeded"), body
    for node in ("w1", "w2"):
        assert "jobs_processed_total" in partitions.metrics(node)

    topology = partitions.topology
    assert topology.reachable("w1", "pg") and topology.reachable("w1", "redis")
    started = time.monotonic()
    partitions.cut("w1", "pg")
    assert not topology.reachable("w1", "pg", timeout=2), "w1 still reaches PostgreSQL through the cut"
    assert time.monotonic() - started >= 2, "the connect was refused at once: a partition drops silently"
    assert topology.reachable("w1", "redis"), "cutting w1-pg cut w1-redis too"
    assert topology.reachable("w2", "pg"), "cutting w1-pg cut w2-pg too"
    partitions.heal("w1", "pg")
    assert topology.reachable("w1", "pg"), "w1 does not reach PostgreSQL after the heal"

    faults = [line for line in (partitions.history_dir / "harness.jsonl").read_text().splitlines() if "fault" in line]
    assert len(faults) == 2 and "w1-pg cut" in faults[0] and "healed" in faults[1], faults


def test_a_node_cut_off_reaches_nothing_and_the_others_are_untouched(topology, postgres, redis_server):
    topology.cut_node("w2")
    try:
        assert not topology.reachable("w2", "pg", timeout=1) and not topology.reachable("w2", "redis", timeout=1)
        assert topology.reachable("w1", "pg") and topology.reachable("web", "redis")
        topology.cut("web", "redis")  # two cuts at once, in two namespaces
        assert not topology.reachable("web", "redis", timeout=1) and topology.reachable("web", "pg")
    finally:
        topology.heal_all()
    assert all(topology.reachable(node, service) for node in ("w2", "web") for service in ("pg", "redis"))


def test_namespaces_left_by_a_dead_run_are_removed(topology):
    import subprocess

    from . import netns

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{netns.PREFIX}-{gone.pid}-dead-svc"
    netns.run("ip", "netns", "add", stale)
    inside = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "60"])
    servers.wait_for(lambda: bool(netns.run("ip", "netns", "pids", stale).stdout.strip()), timeout=5, what="sleep")
    try:
        removed = netns.remove_stale()
        assert removed == [stale], removed
        assert inside.wait(5) == -9, "the process left inside the stale namespace was not ended"
        names = netns.run("ip", "netns", "list").stdout
        assert stale not in names
        assert all(topology.ns(node) in names for node in ("svc", *netns.NODES)), "a live run's namespace was removed"
    finally:
        netns.run("ip", "netns", "del", stale, check=False)
        inside.kill()
