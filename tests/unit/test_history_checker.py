"""The partition suite's history checker, fed histories written as the handlers and harness write them."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tests.partitions.history import HARNESS_FILE, Final, JobFinal, PidWatcher, append, check, load, report, summary

BOUND = 15.0  # lease + grace in these histories


def run(directory, job, serial, node, pid, start, end=None, ok=True, error=None):
    """Writes one handler run as test.history does: a start, ticks, an end unless `end` is None."""
    path = directory / f"{node}-{pid}.jsonl"
    base = {"job": job, "serial": serial, "node": node, "pid": pid}
    append(path, {"e": "start", **base, "t": start})
    for i in range(1, int(((end or start + 1) - start) / 0.2)):
        append(path, {"e": "tick", **base, "t": start + i * 0.2})
    if end is not None:
        append(path, {"e": "end", **base, "t": end, "ok": ok, "error": error})


def harness(directory, *events):
    for event in events:
        append(directory / HARNESS_FILE, event)


def accepted(directory, *jobs):
    harness(directory, *({"e": "accepted", "job": job, "t": 99.0} for job in jobs))


def metrics(submitted, processed, dead=0, cancelled=0):
    return {
        "jobs_submitted_total": submitted,
        "jobs_processed_total": processed,
        "jobs_dead_lettered_total": dead,
        "jobs_cancelled_total": cancelled,
    }


def kinds(anomalies):
    return sorted(anomaly.kind for anomaly in anomalies)


def test_a_clean_history_with_a_bounded_takeover_passes(tmp_path):
    accepted(tmp_path, "taken", "cancelled", "dead", "killed")
    # Taken over: w1's run is fenced and ends 7 s into w2's run, which succeeds.
    run(tmp_path, "taken", 1, "w1", 101, 100.0, 112.0, ok=False, error="AttemptFenced: lease lost")
    run(tmp_path, "taken", 2, "w2", 202, 105.0, 120.0)
    # Cancelled while running: the handler ends 0.5 s after the cancel's answer.
    run(tmp_path, "cancelled", 1, "w1", 102, 100.0, 101.5, ok=False, error="JobCancelled: cancelled by alice")
    harness(tmp_path, {"e": "cancel", "job": "cancelled", "by": "alice", "t": 101.0})
    for serial in range(1, 5):
        run(tmp_path, "dead", serial, "w2", 203, 100.0 + serial * 2, 101.0 + serial * 2, ok=False, error="RuntimeError")
    # A pool process killed mid-run writes no end: its run ends when the watcher saw it gone.
    run(tmp_path, "killed", 1, "w1", 103, 100.0)
    harness(tmp_path, {"e": "gone", "pid": 103, "t": 110.0}, {"e": "fault", "what": "w1-pg cut", "t": 104.0})
    run(tmp_path, "killed", 2, "w2", 204, 108.0, 109.0)
    final = Final(
        jobs={
            "taken": JobFinal("succeeded", 120.1, 2, {1: "lost", 2: "succeeded"}),
            "cancelled": JobFinal("cancelled", 100.9, None, {1: "cancelled"}),
            "dead": JobFinal("dead", 109.1, None, dict.fromkeys(range(1, 5), "failed")),
            "killed": JobFinal("succeeded", 109.1, 2, {1: "lost", 2: "succeeded"}),
        },
        dead={"dead"},
        metrics=metrics(4, 2, dead=1, cancelled=1),
    )

    history = load(tmp_path)
    anomalies = check(history, final, overlap_bound=BOUND)

    assert anomalies == [], report(anomalies)
    assert report(anomalies) == "no anomalies"
    killed = [r for r in history.runs if r.pid == 103]
    assert [(r.end, r.ok, r.gone) for r in killed] == [(110.0, False, True)]
    assert history.cancels == {"cancelled": (101.0, "alice")}
    assert [f["what"] for f in history.faults] == ["w1-pg cut"]
    assert summary(history, anomalies) == (
        "4 jobs accepted, 9 runs, 1 cancels, 1 faults, longest overlap 7.00s: 0 anomalies"
    )


def test_an_overlap_longer_than_the_bound_is_caught(tmp_path):
    accepted(tmp_path, "job")
    run(tmp_path, "job", 1, "w1", 101, 100.0, 130.0)  # never fenced: ran 25 s beside serial 2
    run(tmp_path, "job", 2, "w2", 202, 105.0, 135.0)
    final = Final({"job": JobFinal("succeeded", 135.0, 2, {1: "lost", 2: "succeeded"})}, set(), metrics(1, 1))

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)

    assert kinds(anomalies) == ["overlap"]
    assert "25.00s > 15.0s" in anomalies[0].detail
    assert check(load(tmp_path), final, overlap_bound=30.0) == []


def test_a_run_that_never_ended_outlives_its_job_and_overlaps_for_ever(tmp_path):
    accepted(tmp_path, "job")
    run(tmp_path, "job", 1, "w1", 101, 100.0)  # no end, and no watcher saw its process go
    run(tmp_path, "job", 2, "w2", 202, 105.0, 106.0)
    final = Final({"job": JobFinal("succeeded", 106.0, 2, {1: "lost", 2: "succeeded"})}, set(), metrics(1, 1))

    assert kinds(check(load(tmp_path), final, overlap_bound=BOUND)) == ["still_running"]

    run(tmp_path, "job", 3, "w2", 203, 120.0)  # two open runs: they overlap for ever
    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)
    assert kinds(anomalies) == ["overlap", "ran_after_end", "still_running", "still_running"]
    assert "inf" in anomalies[0].detail


def test_a_lost_job_and_a_job_left_running_are_caught(tmp_path):
    accepted(tmp_path, "lost", "stuck")
    run(tmp_path, "stuck", 1, "w1", 101, 100.0, 101.0)
    final = Final({"stuck": JobFinal("retrying", None, None, {1: "failed"})}, set(), metrics(2, 0))

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)

    assert [(a.kind, a.job) for a in anomalies] == [("lost", "lost"), ("not_terminal", "stuck")]


def test_a_double_success_is_caught(tmp_path):
    accepted(tmp_path, "job")
    run(tmp_path, "job", 1, "w1", 101, 100.0, 101.0)
    run(tmp_path, "job", 2, "w2", 202, 102.0, 103.0)
    final = Final({"job": JobFinal("succeeded", 103.0, 2, {1: "succeeded", 2: "succeeded"})}, set(), metrics(1, 1))

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)

    assert kinds(anomalies) == ["double_success"]
    assert "[1, 2]" in anomalies[0].detail


def test_a_success_no_run_ended_with_is_caught(tmp_path):
    accepted(tmp_path, "job")
    run(tmp_path, "job", 1, "w1", 101, 100.0, 101.0)  # serial 1 succeeded in its run...
    run(tmp_path, "job", 2, "w2", 202, 102.0, 103.0, ok=False, error="AttemptFenced: taken over")
    # ...but the system says serial 2 did.
    final = Final({"job": JobFinal("succeeded", 103.0, 2, {1: "lost", 2: "succeeded"})}, set(), metrics(1, 1))

    assert kinds(check(load(tmp_path), final, overlap_bound=BOUND)) == ["success_without_run"]


def test_counters_that_do_not_match_the_history_are_caught(tmp_path):
    accepted(tmp_path, "job")
    run(tmp_path, "job", 1, "w1", 101, 100.0, 101.0)
    final = Final({"job": JobFinal("succeeded", 101.0, 1, {1: "succeeded"})}, set(), metrics(1, 2))

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)
    assert [a.detail for a in anomalies] == ["jobs_processed_total is 2, history: 1"]
    assert kinds(anomalies) == ["metrics_mismatch"]

    final.metrics = {"jobs_submitted_total": 1, "jobs_processed_total": 1}  # absent counters count 0
    assert check(load(tmp_path), final, overlap_bound=BOUND) == []
    final.metrics["jobs_cancelled_total"] = 1
    assert kinds(check(load(tmp_path), final, overlap_bound=BOUND)) == ["metrics_mismatch"]


def test_a_run_started_after_its_cancel_or_its_end_is_caught(tmp_path):
    accepted(tmp_path, "cancelled", "finished")
    harness(tmp_path, {"e": "cancel", "job": "cancelled", "by": "alice", "t": 100.0})
    run(tmp_path, "cancelled", 1, "w1", 101, 100.4, 100.6, ok=False, error="JobCancelled")  # within 0.5 s
    run(tmp_path, "cancelled", 2, "w2", 202, 101.0, 102.0, ok=False, error="JobCancelled")
    run(tmp_path, "finished", 1, "w1", 101, 90.0, 91.0)
    run(tmp_path, "finished", 2, "w1", 101, 95.0, 96.0)  # started after the job had succeeded
    final = Final(
        {
            "cancelled": JobFinal("cancelled", 100.0, None, {1: "cancelled"}),
            "finished": JobFinal("succeeded", 91.0, 1, {1: "succeeded"}),
        },
        set(),
        metrics(2, 1, cancelled=1),
    )

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)

    # The cancelled job's run 2 started after both its cancel and its finished_at.
    assert [(a.kind, a.job) for a in anomalies] == [
        ("ran_after_end", "finished"),
        ("ran_after_end", "cancelled"),
        ("ran_after_end", "cancelled"),
    ]
    assert "after its cancel" in anomalies[1].detail


def test_a_dead_job_still_running_is_caught(tmp_path):
    accepted(tmp_path, "open", "late", "done")
    run(tmp_path, "open", 1, "w1", 101, 100.0)  # partitioned, never ended
    run(tmp_path, "late", 1, "w1", 102, 100.0, 130.0, ok=False, error="RuntimeError")  # 20 s after dead
    run(tmp_path, "done", 1, "w1", 103, 100.0, 120.0, ok=False, error="RuntimeError")  # within the bound
    final = Final(
        {job: JobFinal("dead", 110.0, None, {1: "lost"}) for job in ("open", "late", "done")},
        {"open", "late", "done"},
        metrics(3, 0, dead=3),
    )

    anomalies = check(load(tmp_path), final, overlap_bound=BOUND)

    assert [(a.kind, a.job) for a in anomalies] == [("dead_still_running", "late"), ("dead_still_running", "open")]
    assert report(anomalies).splitlines()[0] == "2 anomalies: 2 dead_still_running"


def test_the_pid_watcher_ends_the_runs_of_processes_that_exit(tmp_path):
    def sleeper(seconds):
        return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])

    def gone_records():
        path = tmp_path / HARNESS_FILE
        return path.read_text().count('"gone"') if path.exists() else 0

    reaped, zombie, ended, alive = sleeper(0.5), sleeper(0.5), sleeper(0.5), sleeper(60)
    try:
        started = time.time()
        run(tmp_path, "reaped", 1, "w1", reaped.pid, started)  # killed mid-run: no end record
        run(tmp_path, "zombie", 1, "w1", zombie.pid, started)  # the same, its parent not waiting yet
        run(tmp_path, "ended", 1, "w1", ended.pid, started, started + 0.1)  # ended before its process
        run(tmp_path, "alive", 1, "w2", alive.pid, started)  # still running
        watcher = PidWatcher(tmp_path)
        watcher.start()
        reaped.wait(), ended.wait()  # their pids no longer exist; zombie's stays until it is waited for
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gone_records() < 2:
            time.sleep(0.05)
        seen = time.time()
        assert zombie.poll() is not None  # reaped only now, after the watcher saw it gone
        time.sleep(0.3)  # three more polls: a second `gone` for one, or one for the others, would show
        watcher.stop()
    finally:
        alive.kill()
        alive.wait()

    runs = {r.job: r for r in load(tmp_path).runs}
    for job in ("reaped", "zombie"):
        assert runs[job].gone and not runs[job].ok
        assert started < runs[job].end <= seen
    assert (runs["ended"].gone, runs["ended"].end) == (False, started + 0.1)
    assert (runs["alive"].gone, runs["alive"].end) == (False, None)
    assert gone_records() == 2


def test_the_history_job_type_writes_what_the_checker_reads(tmp_path, monkeypatch):
    from tests.handlers import history

    monkeypatch.setenv("JQ_HISTORY_DIR", str(tmp_path))
    monkeypatch.setenv("JQ_HISTORY_NODE", "w9")
    checks = []

    def fenced():
        raise RuntimeError("lease lost")

    assert history({"seconds": 0.6}, SimpleNamespace(job_id="ok", serial=3, check=lambda: checks.append(1))) == {
        "serial": 3
    }
    with pytest.raises(RuntimeError, match="lease lost"):
        history({"seconds": 1}, SimpleNamespace(job_id="fenced", serial=4, check=fenced))
    history({"seconds": 0.2}, SimpleNamespace(job_id="no_check", serial=5))  # before ctx.check() existed
    with pytest.raises(RuntimeError, match="failing as asked"):
        history({"seconds": 0.2, "check": False, "fail": True}, SimpleNamespace(job_id="fails", serial=6, check=fenced))

    runs = {r.job: r for r in load(tmp_path).runs}
    assert checks == [1, 1, 1]
    assert [(r.serial, r.node, r.ok, r.error, r.last_tick is not None) for r in runs.values()] == [
        (3, "w9", True, None, True),
        (4, "w9", False, "RuntimeError: lease lost", False),  # fenced before its first tick
        (5, "w9", True, None, True),
        (6, "w9", False, "RuntimeError: failing as asked, serial 6", True),
    ]
    assert {p.name for p in tmp_path.iterdir()} == {f"w9-{os.getpid()}.jsonl"}
