"""The partition suite's history: what the handlers and the harness saw, and its offline checker.

Handlers of `test.history` (tests/handlers.py) append start, tick and end records to
`$JQ_HISTORY_DIR/<node>-<pid>.jsonl`; the harness appends accepted, cancel, gone and fault records
to `harness.jsonl` there. None of it goes through the system under test. After a run, `load` reads
the directory, the caller reads the system's final state into `Final`, and `check` lists what
breaks the guarantees of SPEC §3. No Django here: the checker is plain data in, anomalies out.
"""

import json
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HARNESS_FILE = "harness.jsonl"
TERMINAL = frozenset({"succeeded", "dead", "cancelled"})
# Records come from different clocks: the harness stamps a cancel when its answer arrived (after the
# commit), PostgreSQL stamps finished_at with its transaction's start, handlers stamp their own
# records. A run may start up to this many seconds after a job's end before it counts as a late run.
CLOCK_TOLERANCE = 0.5
_lock = threading.Lock()


def append(path: Path, event: dict) -> None:
    """One write of one line in append mode: records of concurrent writers never interleave."""
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def record(event: dict, history_dir: str | Path | None = None) -> None:
    """Adds a harness record (accepted, cancel, gone, fault), stamped now unless it has a `t`."""
    directory = Path(history_dir or os.environ["JQ_HISTORY_DIR"])
    append(directory / HARNESS_FILE, {**event, "t": event.get("t", time.time())})


def _read_lines(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete lines from `offset` on, and the offset after the last of them (a line being
    written stays for the next read)."""
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read()
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()], offset + end


@dataclass
class Run:
    """One handler run: an attempt (job, serial) as one process (pid) lived it."""

    job: str
    serial: int
    node: str
    pid: int
    start: float
    last_tick: float | None = None
    end: float | None = None  # None: still open (no end record and no `gone` for its process)
    ok: bool | None = None
    error: str | None = None
    gone: bool = False  # ended by its process exiting, seen by the PidWatcher, not by an end record

    def __str__(self) -> str:
        end = "open" if self.end is None else f"{self.end:.3f}" + (" (gone)" if self.gone else "")
        return f"serial {self.serial} on {self.node} pid {self.pid} {self.start:.3f}-{end} ok={self.ok}"


@dataclass
class History:
    runs: list[Run] = field(default_factory=list)
    accepted: dict[str, float] = field(default_factory=dict)  # job -> when its submit answered
    cancels: dict[str, tuple[float, str]] = field(default_factory=dict)  # job -> (first answer, by)
    faults: list[dict] = field(default_factory=list)

    def runs_of(self, job: str) -> list[Run]:
        return [run for run in self.runs if run.job == job]


def load(history_dir: str | Path) -> History:
    history, runs, gone = History(), {}, defaultdict(list)
    for path in sorted(Path(history_dir).glob("*.jsonl")):
        for event in _read_lines(path)[0]:
            kind, t = event["e"], event["t"]
            if kind in {"start", "tick", "end"}:
                key = (event["job"], event["serial"], event["pid"])
                run = runs.setdefault(key, Run(*key[:2], event["node"], event["pid"], start=t))
                if kind == "start":
                    run.start = t
                elif kind == "tick":
                    run.last_tick = max(run.last_tick or t, t)
                else:
                    run.end, run.ok, run.error = t, event["ok"], event.get("error")
            elif kind == "accepted":
                history.accepted[event["job"]] = t
            elif kind == "cancel" and (event["job"] not in history.cancels or t < history.cancels[event["job"]][0]):
                history.cancels[event["job"]] = (t, event.get("by", ""))
            elif kind == "gone":
                gone[event["pid"]].append(t)
            elif kind == "fault":
                history.faults.append(event)
    for run in runs.values():
        ends = [t for t in gone[run.pid] if t >= run.start]
        if run.end is None and ends:
            run.end, run.ok, run.error, run.gone = min(ends), False, "process gone", True
    history.runs = sorted(runs.values(), key=lambda run: run.start)
    history.faults.sort(key=lambda event: event["t"])
    return history


class PidWatcher(threading.Thread):
    """Every 0.1 s, records `gone` for a process that had an open run (a start, no end) and exited:
    a killed pool process writes no end record, and its run ends when the process does."""

    def __init__(self, history_dir: str | Path, interval: float = 0.1) -> None:
        super().__init__(name="history-pid-watcher", daemon=True)
        self.dir, self.interval = Path(history_dir), interval
        self.offsets: dict[Path, int] = {}
        self.open: dict[tuple[str, int, int], float] = {}  # (job, serial, pid) -> start
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def _read(self) -> None:
        for path in self.dir.glob("*.jsonl"):
            if path.name == HARNESS_FILE:
                continue
            events, self.offsets[path] = _read_lines(path, self.offsets.get(path, 0))
            for event in events:
                key = (event["job"], event["serial"], event["pid"])
                if event["e"] == "start":
                    self.open[key] = event["t"]
                elif event["e"] == "end":
                    self.open.pop(key, None)

    def _exited(self, pid: int, since: float) -> bool:
        try:
            process = psutil.Process(pid)
            # A pid reused by a process born after the run started is not the run's process (with a
            # margin: Linux gives the boot time, and so create_time(), to the whole second).
            return process.status() == psutil.STATUS_ZOMBIE or process.create_time() > since + 2
        except psutil.NoSuchProcess:
            return True

    def poll(self) -> None:
        # Exits first, records second: a run's end record is written before its process exits, so
        # reading after seeing the exit never mistakes a finished run for a vanished one.
        exited = {pid for (_, _, pid), start in self.open.items() if self._exited(pid, start)}
        self._read()
        for pid in exited & {pid for (_, _, pid) in self.open}:
            record({"e": "gone", "pid": pid}, self.dir)
            self.open = {key: start for key, start in self.open.items() if key[2] != pid}

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                self.poll()
        except BaseException as exc:  # kept for stop(): a thread's death is otherwise silent
            self.failure = exc
            raise

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        if self.failure is not None:
            raise RuntimeError("the pid watcher stopped early") from self.failure
        self.poll()  # the last records and exits before the checker reads the history: a run read
        self.poll()  # by the first poll is checked by the second


@dataclass
class JobFinal:
    """A job as the system left it. `outcomes`: attempt serial (its number) -> outcome."""

    status: str
    finished_at: float | None = None
    succeeded_serial: int | None = None
    outcomes: dict[int, str] = field(default_factory=dict)


@dataclass
class Final:
    """What the system says after the run. `metrics`: counter sums over all nodes and labels, for
    the run's job types (a counter absent from /metrics is 0)."""

    jobs: dict[str, JobFinal]
    dead: set[str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class Anomaly:
    kind: str
    job: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.job or '-'}: {self.detail}"


def overlaps(history: History) -> list[tuple[Run, Run, float]]:
    """Every pair of runs of one job that ran at once, and for how long (an open run runs on forever)."""
    pairs = []
    by_job = defaultdict(list)
    for run in history.runs:
        by_job[run.job].append(run)
    for runs in by_job.values():
        for i, a in enumerate(runs):
            for b in runs[i + 1 :]:
                ends = [run.end if run.end is not None else float("inf") for run in (a, b)]
                seconds = min(ends) - max(a.start, b.start)
                if seconds > 0:
                    pairs.append((a, b, seconds))
    return pairs


def check(history: History, final: Final, *, overlap_bound: float) -> list[Anomaly]:
    """What breaks the guarantees: (a) lost, not_terminal; (b) success_without_run, double_success
    (the system recorded two succeeded attempts: two runs may end ok, as long as the serial fence
    refused one result); (c) overlap beyond the bound; (d) ran_after_end (started after the cancel's
    answer or finished_at, give or take CLOCK_TOLERANCE); (e) metrics_mismatch; (f) a run still going
    `overlap_bound` after its job ended: dead_still_running, or still_running for a job that
    succeeded or was cancelled (an open run never ends, so it counts here, not as an overlap)."""
    found = []
    for job in history.accepted:  # (a) one terminal status for every accepted job
        if job not in final.jobs:
            found.append(Anomaly("lost", job, "accepted, but the system has no such job"))
        elif final.jobs[job].status not in TERMINAL:
            found.append(Anomaly("not_terminal", job, f"ended the run {final.jobs[job].status}"))
    for job, state in final.jobs.items():  # (b) a success is one run's success
        runs = history.runs_of(job)
        if state.status == "succeeded" and not any(r.ok and r.serial == state.succeeded_serial for r in runs):
            found.append(Anomaly("success_without_run", job, f"no run of serial {state.succeeded_serial} ended ok"))
        successes = sorted(serial for serial, outcome in state.outcomes.items() if outcome == "succeeded")
        if len(successes) > 1:
            found.append(Anomaly("double_success", job, f"attempts {successes} all recorded succeeded"))
    for a, b, seconds in overlaps(history):  # (c) bounded overlap
        if seconds > overlap_bound:
            found.append(Anomaly("overlap", a.job, f"{seconds:.2f}s > {overlap_bound}s: {a} and {b}"))
    for run in history.runs:  # (d) nothing starts after its job's end
        ends = {"cancel": history.cancels.get(run.job, (None,))[0]}
        if run.job in final.jobs:
            ends["finished_at"] = final.jobs[run.job].finished_at
        for what, t in ends.items():
            if t is not None and run.start > t + CLOCK_TOLERANCE:
                found.append(Anomaly("ran_after_end", run.job, f"{run} started {run.start - t:.2f}s after its {what}"))
    statuses = Counter(state.status for state in final.jobs.values())  # (e) counters match
    expected = {
        "jobs_submitted_total": len(history.accepted),
        "jobs_processed_total": statuses["succeeded"],
        "jobs_dead_lettered_total": len(final.dead),
        "jobs_cancelled_total": statuses["cancelled"],
    }
    for name, count in expected.items():
        if final.metrics.get(name, 0) != count:
            found.append(Anomaly("metrics_mismatch", None, f"{name} is {final.metrics.get(name, 0)}, history: {count}"))
    for job, state in sorted(final.jobs.items()):  # (f) a dead job runs nowhere; nor does another ended one
        if state.status not in TERMINAL:
            continue
        kind = "dead_still_running" if job in final.dead else "still_running"
        for run in history.runs_of(job):
            if state.finished_at is None or run.end is None or run.end > state.finished_at + overlap_bound:
                found.append(Anomaly(kind, job, f"{run} after {state.status} at {state.finished_at}"))
    return found


def summary(history: History, anomalies: list[Anomaly]) -> str:
    """One line for the test's output: what ran, the longest overlap, what was found."""
    longest = max((seconds for _, _, seconds in overlaps(history)), default=0.0)
    return (
        f"{len(history.accepted)} jobs accepted, {len(history.runs)} runs, {len(history.cancels)} cancels, "
        f"{len(history.faults)} faults, longest overlap {longest:.2f}s: {len(anomalies)} anomalies"
    )


def report(anomalies: list[Anomaly]) -> str:
    """The failure message: a count per kind, then every anomaly on a line of its own."""
    if not anomalies:
        return "no anomalies"
    kinds = Counter(anomaly.kind for anomaly in anomalies)
    head = f"{len(anomalies)} anomalies: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return "\n".join([head, *(f"  {anomaly}" for anomaly in anomalies)])
