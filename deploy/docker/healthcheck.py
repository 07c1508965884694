"""Health check for every role of the jobqueue image: ask the process PID 1 runs, over loopback.

    web     GET /healthz on gunicorn's --bind port (8000)        database and Redis answer
    worker  GET /healthz on JOB_WORKER_METRICS_PORT (9808)       the worker node is alive
    mover   GET /metrics on JOB_MOVER_METRICS_PORT (9809)        the mover answers
    flower  GET /healthcheck on Flower's --port (5555)           Flower answers
    flower-gate  GET /healthcheck through the gate's --port      the gate and Flower behind it answer
                 (JOBQUEUE_FLOWER_GATE_PORT, 5555)

Any other command (migrate, a shell) has nothing to ask and counts as healthy. The role can be
named as the first argument instead. Exit status 0 is healthy, 1 is not. Standard library only,
so a check costs a few milliseconds, not a Django start-up.
"""

import os
import sys
import urllib.error
import urllib.request
from pathlib import PurePath

TIMEOUT = 4.0
# Django answers only to ALLOWED_HOSTS; every deployment of jobqueue lists localhost there.
HOST_HEADER = "localhost"


def pid1_command() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def option(argv: list[str], *names: str) -> str | None:
    """The value of `--name value`, `--name=value` or `-n value` in argv."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def role_of(argv: list[str]) -> str | None:
    words = {PurePath(arg).name for arg in argv}
    if "gunicorn" in words:
        return "web"
    if "celery" in words and "worker" in words:
        return "worker"
    if "celery" in words and "flower" in words:
        return "flower"
    if "run_mover" in words:
        return "mover"
    if "run_flower_gate" in words:
        return "flower-gate"
    return None


def url_for(role: str, argv: list[str]) -> str:
    if role == "web":
        bind = option(argv, "--bind", "-b") or "0.0.0.0:8000"
        return f"http://127.0.0.1:{bind.rsplit(':', 1)[-1]}/healthz"
    if role == "worker":
        return f"http://127.0.0.1:{os.environ.get('JOB_WORKER_METRICS_PORT') or 9808}/healthz"
    if role == "mover":
        return f"http://127.0.0.1:{os.environ.get('JOB_MOVER_METRICS_PORT') or 9809}/metrics"
    if role == "flower":
        return f"http://127.0.0.1:{option(argv, '--port') or 5555}/healthcheck"
    if role == "flower-gate":
        port = option(argv, "--port") or os.environ.get("JOBQUEUE_FLOWER_GATE_PORT") or 5555
        return f"http://127.0.0.1:{port}/healthcheck"
    raise ValueError(f"unknown role {role!r}")


def check(url: str) -> tuple[bool, str]:
    request = urllib.request.Request(url, headers={"Host": HOST_HEADER})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read(300).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def main(args: list[str]) -> int:
    argv = pid1_command()
    role = args[0] if args else role_of(argv)
    if role is None:
        print("no jobqueue service in this container; nothing to check")
        return 0
    healthy, detail = check(url_for(role, argv))
    print(f"{role}: {'healthy' if healthy else 'unhealthy'} ({detail})")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
