"""gunicorn reads this file from the working directory: metrics of all web workers in one /metrics.

gunicorn's workers are separate processes and a scrape reaches only one of them, so they keep
their metrics in files (prometheus_client's multiprocess mode) in a directory of this master,
and /metrics reads them all. The directory is set here, when gunicorn loads its config, so it
is in place before any worker (or --preload) imports prometheus_client.
"""

import os

from jobs.adapters import multiproc

_dir = multiproc.base_dir() / f"web-{os.getpid()}"
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != str(_dir):  # not again when a HUP reloads this file
    _dir = multiproc.prepare("web")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, path=str(_dir))


def on_exit(server):
    multiproc.remove(_dir)
