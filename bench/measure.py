"""Small measuring helpers shared by the scenarios."""

import contextlib
import threading
import time
from collections.abc import Callable

import psutil


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (a worker node and its pool), in MiB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


class Sampler:
    """Calls `sample()` every `interval` seconds in a thread until stopped; keeps (seconds, value)."""

    def __init__(self, sample: Callable[[], float], interval: float = 0.5) -> None:
        self.sample, self.interval = sample, interval
        self.values: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            self.values.append((time.monotonic() - started, self.sample()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rate_limited(count: int, per_second: float):
    """Yield 0..count-1, paced at `per_second`."""
    started = time.monotonic()
    for index in range(count):
        delay = started + index / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield index


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
