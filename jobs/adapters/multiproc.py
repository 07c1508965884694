"""Directories for prometheus_client's multiprocess mode, one per gunicorn master or worker node.

Standard library only: gunicorn's config file uses it before Django is loaded. Each directory is
`JOB_METRICS_DIR/<kind>-<pid of the main process>`; it is emptied when the process starts and
removed when it stops. Directories left by processes that are gone (killed with -9) are removed by
the next start."""

import os
import shutil
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def base_dir() -> Path:
    """JOB_METRICS_DIR, else `metrics` under JOBQUEUE_VAR_DIR (as in settings)."""
    configured = os.environ.get("JOB_METRICS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("JOBQUEUE_VAR_DIR") or BASE_DIR / "var") / "metrics"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(base: Path, kind: str) -> None:
    for path in base.glob(f"{kind}-*"):
        pid = path.name.removeprefix(f"{kind}-")
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def prepare(kind: str, *, export: bool = True) -> Path:
    """An empty directory for this process tree, also set as PROMETHEUS_MULTIPROC_DIR (`export`)."""
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(base, kind)
    path = base / f"{kind}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    if export:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
