"""Never two runs at once: leases, and the fence that stops an attempt that is no longer its own.

An attempt holds its job's lease (JOB_LEASE_SECONDS), renewed every JOB_LEASE_RENEW_SECONDS by a
keeper thread in the process that runs it; the mover hands a job whose lease ran out to another
attempt. The attempt is *fenced* from the moment it may have lost the job:
- its lease ran out here, by this node's clock (renewals failed: the database was unreachable, or
  the process was frozen and could not renew),
- the database says the job no longer runs under its serial (taken over, or cancelled).
A fenced attempt is told (ctx.check() and ctx.progress() raise AttemptFenced, JobCancelled for a
cancel); what it still returns is refused by its serial and counted (job_results_refused_total);
and when it has not stopped after JOB_FENCE_GRACE (JOB_CANCEL_GRACE for a cancel) its pool
process is killed. A lease's end is set and read by the database's clock (store.lease_end); this
node counts it from before its claim or renewal was sent, so it runs out here first. Two runs of
one job thus overlap by at most the grace plus one look of the watchdog (STEP), whatever the
nodes' clocks say (docs/explanation/delivery-guarantees.md).

The decision is the worker node's main process's (the watchdog), not the pool process's: a
handler that holds the GIL in C code starves its own process's threads, not its parent. Pool
processes and the watchdog share a directory (one per node, like the metrics'): each pool process
writes `<pid>.lease` (its running attempts and how long their leases hold), the watchdog writes
`<pid>.stop` (the attempts it fenced, and why), which the keeper reads every STEP."""

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import signals
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from jobs import services
from jobs.adapters import metrics, multiproc
from jobs.rules.exceptions import AttemptFenced, JobCancelled
from jobs.services import selectors

log = logging.getLogger("jobqueue.worker")

STEP = 0.25  # seconds between two looks of the keeper and of the watchdog

_shared: dict[str, Path | None] = {"dir": None}


@signals.celeryd_init.connect
def _make_shared_dir(**_: Any) -> None:
    """The node's directory, made by its main process before the pool forks."""
    _shared["dir"] = multiproc.prepare("fence", export=False)


@signals.worker_shutdown.connect
def _remove_shared_dir(**_: Any) -> None:
    if _shared["dir"] is not None:
        multiproc.remove(_shared["dir"])


def _write(path: Path, content: Any) -> None:
    temporary = path.with_suffix(f".{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- in the process that runs the handler --------------------------------------------------


@dataclass
class _Attempt:
    claim: services.Claim
    task_id: str
    lease_until: float  # time.monotonic() (one clock for every process of the machine) when its lease ends
    fenced: tuple[str, str] | None = None  # (kind, reason) once the watchdog fenced it


_running: dict[tuple[str, int], _Attempt] = {}
_lock = threading.Lock()
_keeper_pid: int | None = None
_stop_seen: float = 0.0  # mtime of the stop file last read


def _mine(suffix: str, pid: int | None = None) -> Path | None:
    base = _shared["dir"]
    return None if base is None else base / f"{pid or os.getpid()}.{suffix}"


def _publish() -> None:
    path = _mine("lease")
    if path is None:
        return
    with _lock:
        leases = [
            {"job": a.claim.job_id, "serial": a.claim.serial, "task": a.task_id, "until": a.lease_until}
            for a in _running.values()
        ]
        try:
            _write(path, leases)
        except OSError as exc:  # the node's directory removed under it: the attempts go unwatched
            log.error("the leases of this process could not be published: %s", exc)


def begin(claim: services.Claim, *, task_id: str) -> None:
    """An attempt starts running in this process: its lease is kept from now on."""
    global _keeper_pid
    # Counted from before the claim was sent (its start), so it ends here before in the database.
    lease_until = time.monotonic() - (time.time() - claim.started_at.timestamp()) + settings.JOB_LEASE_SECONDS
    with _lock:
        _running[(claim.job_id, claim.serial)] = _Attempt(claim, task_id, lease_until)
    _publish()
    if _shared["dir"] is not None and _keeper_pid != os.getpid():  # in a worker node (not run eagerly)
        _keeper_pid = os.getpid()
        threading.Thread(target=_keep, name="jobqueue-lease-keeper", daemon=True).start()
        threading.Thread(target=_listen, name="jobqueue-fence-listener", daemon=True).start()


def end(claim: services.Claim) -> bool:
    """The attempt's handler returned or raised; whether it was fenced by then."""
    with _lock:
        attempt = _running.pop((claim.job_id, claim.serial), None)
    _publish()
    return attempt is not None and attempt.fenced is not None


def check(job_id: str, serial: int) -> None:
    """Raise AttemptFenced (JobCancelled) if the attempt is no longer its own."""
    attempt = _running.get((job_id, serial))
    if attempt is not None and attempt.fenced is not None:
        kind, reason = attempt.fenced
        raise (JobCancelled if kind == "cancelled" else AttemptFenced)(reason)


def fenced(job_id: str, serial: int) -> bool:
    attempt = _running.get((job_id, serial))
    return attempt is not None and attempt.fenced is not None


def lost(job_id: str, serial: int, reason: str) -> AttemptFenced:
    """The attempt learnt it lost the job by a write the database refused: it is fenced from now on
    (cancelled, if that is why; the watchdog's stop file may not have come yet)."""
    try:
        state = selectors.attempts_current([(job_id, serial)]).get(str(job_id))
    except DatabaseError:
        state = None
    kind = "cancelled" if state is not None and state[:2] == ("cancelled", serial) else "taken_over"
    reason = state[2] if kind == "cancelled" else reason
    attempt = _running.get((job_id, serial))
    if attempt is not None and attempt.fenced is None:
        attempt.fenced = (kind, reason)
    return (JobCancelled if kind == "cancelled" else AttemptFenced)(reason)


def _keep() -> None:
    while True:
        time.sleep(settings.JOB_LEASE_RENEW_SECONDS)
        _renew()


def _listen() -> None:
    """Reads the watchdog's stop file every STEP, in a thread of its own: a renewal sent into a
    partition blocks the keeper for up to DATABASE_TCP_USER_TIMEOUT_MS, and the handler must learn
    that it is fenced within the grace all the same."""
    while True:
        time.sleep(STEP)
        _read_stops()


def _read_stops() -> None:
    global _stop_seen
    path = _mine("stop")
    try:
        changed = path is not None and path.stat().st_mtime != _stop_seen
    except FileNotFoundError:
        return
    if not changed:
        return
    _stop_seen = path.stat().st_mtime
    for stop in _read(path) or []:
        attempt = _running.get((stop["job"], stop["serial"]))
        if attempt is not None and attempt.fenced is None:
            attempt.fenced = (stop["kind"], stop["reason"])
            log.warning("job %s attempt %s fenced: %s", stop["job"], stop["serial"], stop["reason"])


def _renew() -> None:
    """Extend the leases of this process's running attempts. One it cannot be asked about keeps
    the lease it had, until that runs out. One the database refuses has lost its job: the
    watchdog's next database check (JOB_FENCE_CHECK_SECONDS) fences it, and says why (a cancel
    gets JOB_CANCEL_GRACE); it is not extended meanwhile."""
    attempts = [a for a in list(_running.values()) if a.fenced is None]
    if not attempts:
        return
    asked_at = time.monotonic()
    try:
        kept = services.jobs_extend_lease(attempts=[(a.claim.job_id, a.claim.serial) for a in attempts])
    except DatabaseError as exc:
        log.warning("extending the leases of %d running jobs failed: %s", len(attempts), exc)
        close_old_connections()
        return
    for attempt in attempts:
        if (attempt.claim.job_id, attempt.claim.serial) in kept:
            attempt.lease_until = asked_at + settings.JOB_LEASE_SECONDS
        else:
            log.warning("job %s attempt %s: lease renewal refused", attempt.claim.job_id, attempt.claim.serial)
    _publish()


# --- in the worker node's main process -----------------------------------------------------


@dataclass
class _Fenced:
    kind: str
    reason: str
    since: float  # monotonic
    pid: int
    task_id: str
    ended: bool = False  # killed (or, in the node's own process, given up on): kept until its lease goes


# (job id, serial) -> the attempts this node fenced and still runs; task id -> (job id, serial)
# of pool processes killed for running past their grace (the task_failure receiver reads it).
_fenced: dict[tuple[str, int], _Fenced] = {}
_fenced_lock = threading.Lock()
killed: dict[str, tuple[str, int]] = {}


@signals.worker_ready.connect
def _start_watchdog(**_: Any) -> None:
    if _shared["dir"] is None:
        return
    threading.Thread(target=_watch, name="jobqueue-fence-watchdog", daemon=True).start()
    threading.Thread(target=_ask_database, name="jobqueue-fence-check", daemon=True).start()


def _leases() -> dict[tuple[str, int], dict]:
    """The running attempts of the node's processes, (job id, serial) -> lease with its pid."""
    found: dict[tuple[str, int], dict] = {}
    for path in _shared["dir"].glob("*.lease"):
        pid = int(path.stem)
        if not multiproc.alive(pid):
            path.unlink(missing_ok=True)
            path.with_suffix(".stop").unlink(missing_ok=True)
            continue
        for lease in _read(path) or []:
            found[(lease["job"], lease["serial"])] = {**lease, "pid": pid}
    return found


def _fence(key: tuple[str, int], lease: dict, kind: str, reason: str) -> None:
    with _fenced_lock:
        # A look that read the leases before a kill (the database check) finds the attempt gone.
        if key not in _fenced and (_shared["dir"] / f"{lease['pid']}.lease").exists():
            _fence_now(key, lease, kind, reason)


def _fence_now(key: tuple[str, int], lease: dict, kind: str, reason: str) -> None:
    _fenced[key] = _Fenced(kind, reason, time.monotonic(), lease["pid"], lease["task"])
    metrics.record_fenced(reason=kind)
    log.warning("job %s attempt %s fenced (%s); it must stop", key[0], key[1], reason)
    stops = [
        {"job": job, "serial": serial, "kind": f.kind, "reason": f.reason}
        for (job, serial), f in _fenced.items()
        if f.pid == lease["pid"]
    ]
    _write(_shared["dir"] / f"{lease['pid']}.stop", stops)


def _watch() -> None:
    while True:
        time.sleep(STEP)
        try:
            _look()
        except Exception:  # the watchdog must outlive anything one look runs into
            log.exception("the fence watchdog's look failed")


def _look() -> None:
    leases = _leases()
    now = time.monotonic()
    for key, lease in leases.items():
        if lease["until"] < now:
            _fence(key, lease, "lease_expired", "lease lost: it ran out before a renewal got through")
    with _fenced_lock:
        for key in [key for key in _fenced if key not in leases]:
            del _fenced[key]  # its handler ended (or its process did)
        for key, fence in list(_fenced.items()):
            grace = settings.JOB_CANCEL_GRACE if fence.kind == "cancelled" else settings.JOB_FENCE_GRACE
            if not fence.ended and time.monotonic() - fence.since >= grace:
                _kill(key, fence)


def _kill(key: tuple[str, int], fence: _Fenced) -> None:
    # Not forgotten until its lease file goes: a killed process stays (a zombie) until the pool
    # reaps it, seconds later at times, and must not be fenced, counted and killed again meanwhile.
    fence.ended = True
    if fence.pid == os.getpid():
        # A threads or solo pool runs handlers in this process: it cannot end one, only tell it.
        log.error("job %s attempt %s is fenced and still runs; only a prefork pool can end it", *key)
        return
    killed[fence.task_id] = key
    log.warning("job %s attempt %s ran past its grace after %s: ending its process %s", *key, fence.reason, fence.pid)
    try:
        os.kill(fence.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    metrics.record_killed(reason=fence.kind)
    # It runs no more code: its files go now. It may stay a zombie (alive to os.kill(pid, 0)) until the
    # pool reaps it, and must not be fenced, counted and killed again; nor a new process given its pid.
    for suffix in ("lease", "stop"):
        (_shared["dir"] / f"{fence.pid}.{suffix}").unlink(missing_ok=True)


def _ask_database() -> None:
    """Every JOB_FENCE_CHECK_SECONDS, whether the node's running attempts still hold their jobs."""
    while True:
        time.sleep(settings.JOB_FENCE_CHECK_SECONDS)
        leases = _leases()
        if not leases:
            continue
        try:
            current = selectors.attempts_current(list(leases))
        except Exception as exc:  # a database error above all; the thread must outlive any
            log.warning("checking the node's running jobs failed: %s", exc)
            close_old_connections()
            continue
        for key, lease in leases.items():
            state = current.get(key[0])
            if state is None or state[0] != "running" or state[1] != key[1]:
                cancelled = state is not None and state[0] == "cancelled" and state[1] == key[1]
                reason = state[2] if cancelled else "taken over: the job no longer runs under this attempt"
                _fence(key, lease, "cancelled" if cancelled else "taken_over", reason)
