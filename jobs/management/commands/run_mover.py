import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import REGISTRY

from jobs import services
from jobs.adapters import metrics, metrics_http
from jobs.rules.exceptions import JobQueueError
from jobs.services.mover import Mover

log = logging.getLogger("jobqueue.mover")


class Command(BaseCommand):
    help = (
        "Hand due scheduled and retrying jobs to their queue, fire due schedule ticks; recover lost and missing"
        " jobs. Safe to run several."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=None, help="poll interval in seconds")
        parser.add_argument("--once", action="store_true", help="run one round and exit")

    def handle(self, *args, interval: float | None, once: bool, **options):
        # The schedules declared next to the job types this deploy brings. A declaration that is
        # not valid is logged; the mover runs on, for delayed jobs and the other schedules.
        try:
            services.schedules_sync_code()
        except JobQueueError as exc:
            log.error("code-defined schedules not synced: %s", exc.message)
        mover = Mover(interval=interval)
        if once:
            released = mover.tick()
            self.stdout.write(f"released {released} due jobs")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        if settings.JOB_MOVER_METRICS_PORT:
            # Lost attempts are failed here: the mover's counters are only seen on its own endpoint.
            addr, port = settings.JOB_MOVER_METRICS_ADDR, settings.JOB_MOVER_METRICS_PORT
            metrics.start_at_zero(metrics.MOVER_METRICS)
            metrics.start_schedule_metrics_at_zero()
            metrics_http.serve(name="mover", addr=addr, port=port, registry=REGISTRY, health=mover.health)
        mover.run(stop)
