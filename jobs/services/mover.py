"""The mover process: hands due jobs to their queue, fires due schedule ticks, runs the recovery
sweeps and samples the queues.

It sleeps until the next job or tick is due (at most JOB_MOVER_INTERVAL), so delayed jobs and
recurring ones start on time without sitting in any worker's memory. Any number of movers may
run at once.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from jobs import services
from jobs.adapters.unavailable import broker_unavailable, database_unavailable
from jobs.services import selectors

log = logging.getLogger("jobqueue.mover")


@dataclass
class Sweep:
    """A recovery task the mover runs every `every` seconds."""

    run: Callable[[], int]
    every: float
    due: float = field(default=0.0)

    def maybe_run(self, now: float) -> None:
        if now >= self.due:
            self.due = now + self.every
            self.run()


class Mover:
    def __init__(self, *, interval: float | None = None, clock: Callable = timezone.now) -> None:
        self.interval, self.clock = settings.JOB_MOVER_INTERVAL if interval is None else interval, clock
        self.last_round = time.monotonic()
        self.lost_sweep = Sweep(services.jobs_requeue_lost, settings.JOB_LOST_CHECK_SECONDS)
        self.sweeps = [
            self.lost_sweep,
            Sweep(services.jobs_redispatch_missing, settings.JOB_REDISPATCH_CHECK_SECONDS),
            Sweep(services.jobs_dispatch_pending, settings.JOB_PENDING_DISPATCH_SECONDS),
            Sweep(services.dead_letters_reconcile, settings.JOB_REDISPATCH_CHECK_SECONDS),
            # The queues' depth and latency over time, for the admin's charts.
            Sweep(services.queues_sample, settings.JOB_QUEUE_SAMPLE_SECONDS),
            # Limits: wake waiting jobs whose limit has room (a lost wake only delays), and
            # forget the starts older than any rate's window.
            Sweep(services.jobs_wake_waiting, settings.JOB_LIMIT_SWEEP_SECONDS),
            Sweep(services.job_starts_prune, 60.0),
        ]

    def tick(self) -> int:
        """One round: release what is due and run the sweeps that are due; returns jobs released."""
        released = services.jobs_release_due()
        released += services.jobs_wake_due()
        services.schedules_fire_due(now=self.clock())
        now = time.monotonic()
        for sweep in self.sweeps:
            sweep.maybe_run(now)
        return released

    def grace_after_outage(self) -> None:
        """The database was out of reach: so it was for the workers, whose leases and finished
        jobs could not be written either. A lease that ran out meanwhile says nothing about its
        worker, so the lost-lease sweep waits two renewals after the database is back before it
        judges any (a dead worker's job is then found as before, a few seconds later)."""
        grace = time.monotonic() + 2 * settings.JOB_LEASE_RENEW_SECONDS + max(self.interval, 1.0)
        self.lost_sweep.due = max(self.lost_sweep.due, grace)

    def pause(self) -> float:
        """Seconds to sleep: until the next job or schedule tick is due, at most the poll interval."""
        due = [at for at in (selectors.next_due_at(), selectors.next_schedule_tick_at()) if at is not None]
        if not due:
            return self.interval
        next_due = min(due)
        return max(0.0, min(self.interval, (next_due - self.clock()).total_seconds()))

    def run(self, stop: threading.Event) -> None:
        log.info("mover started (interval %.2fs)", self.interval)
        while not stop.is_set():
            try:
                if self.tick() >= settings.JOB_MOVER_BATCH:
                    continue  # more are due: no sleep
                wait = self.pause()
            except Exception as exc:
                close_old_connections()
                wait = max(self.interval, 1.0)
                if database_unavailable(exc):
                    log.warning("mover round failed, retrying: %s: %s", type(exc).__name__, exc)
                    self.grace_after_outage()
                elif broker_unavailable(exc):
                    log.warning("mover round failed, retrying: %s: %s", type(exc).__name__, exc)
                else:
                    # A bug must not stop delayed jobs for good: say it loudly and keep going.
                    log.exception("mover round failed unexpectedly")
            self.last_round = time.monotonic()
            stop.wait(wait)
        log.info("mover stopped")

    def health(self) -> tuple[bool, dict]:
        """Alive while its loop keeps going round (a failed round counts: it will be retried)."""
        age = time.monotonic() - self.last_round
        alive = age < settings.JOB_LIVENESS_SECONDS
        return alive, {"status": "ok" if alive else "stuck", "loop_age_seconds": round(age, 3)}
