import signal
import threading

from django.core.management.base import BaseCommand

from jobs.mover import Mover


class Command(BaseCommand):
    help = "Hand due scheduled and retrying jobs to their queue; recover lost and missing jobs. Safe to run several."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=None, help="poll interval in seconds")
        parser.add_argument("--once", action="store_true", help="run one round and exit")

    def handle(self, *args, interval: float | None, once: bool, **options):
        mover = Mover(interval=interval)
        if once:
            released = mover.tick()
            self.stdout.write(f"released {released} due jobs")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        mover.run(stop)
