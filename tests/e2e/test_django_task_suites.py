"""Django 6.1's own tests of its task API (`tests/tasks` of Django's sdist) against jobqueue's backend,
on Python 3.12 with Django 6.1, real PostgreSQL and Redis, and a real worker.

Nothing of Django's is kept in this repository: the sdist comes from PyPI into var/django-suites/
(kept between runs, as is the virtualenv made there with Django 6.1 and our requirements), and
tests/tasks_suite/ holds the configuration (settings, the backends standing in for Django's dummy
and immediate ones, and the list of tests that do not apply, each with its reason). The
django-tasks 0.12.0 sdist ships no tests, so its suite cannot be run this way.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests import servers

# The Django that requirements.txt pins for Python 3.12 (Django 6.1: django.tasks built in).
REQUIREMENTS = (servers.ROOT / "requirements.txt").read_text()
DJANGO = re.search(r'^Django==(\S+); python_version >= "3.12"', REQUIREMENTS, re.M)[1]
CACHE = servers.ROOT / "var" / "django-suites"
ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.tasks_suite.settings",
    "JOB_TASKS_MAX_RETRIES": "0",  # Django's backends run a task once
}


def python312() -> str:
    installed = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python"))  # pyenv's shim may not run it
    found = str(installed[-1]) if installed else shutil.which("python3.12")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Django 6.1's task tests need Python 3.12 (python3.12 on PATH or in pyenv)")
        pytest.skip("Django 6.1's task tests need Python 3.12")
    return found


def run(*command: str, timeout: float = 300, **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def virtualenv() -> Path:
    """A virtualenv with Django 6.1 and our requirements: this one on 3.12 (make test-django6), else made once."""
    if sys.version_info >= (3, 12):
        return Path(sys.prefix)
    venv = CACHE / f"venv-django-{DJANGO}"
    ready = venv / "installed"
    if not ready.exists():
        shutil.rmtree(venv, ignore_errors=True)
        run(python312(), "-m", "venv", str(venv))
        run(str(venv / "bin" / "pip"), "install", "-q", "-r", str(servers.ROOT / "requirements.txt"))
        ready.touch()
    return venv


def django_task_tests(venv: Path) -> Path:
    """The directory holding Django's tests/tasks as the package `django_task_tests`."""
    suite = CACHE / f"suite-{DJANGO}"
    package = suite / "django_task_tests"
    if not (package / "test_tasks.py").exists():
        downloads = CACHE / "downloads"
        run(
            str(venv / "bin" / "pip"),
            *("download", "--no-binary", ":all:", "--no-deps", f"Django=={DJANGO}", "-d", str(downloads)),
        )
        shutil.rmtree(suite, ignore_errors=True)
        with tarfile.open(downloads / f"django-{DJANGO}.tar.gz") as sdist:
            members = [m for m in sdist.getmembers() if m.name.startswith(f"django-{DJANGO}/tests/tasks/")]
            sdist.extractall(suite, members=members, filter="data")
        (suite / f"django-{DJANGO}" / "tests" / "tasks").rename(package)
    return suite


def test_djangos_task_tests_pass_against_our_backend():
    venv = virtualenv()
    suite = django_task_tests(venv)
    env = {
        **os.environ,
        **ENV,
        "PYTHONPATH": os.pathsep.join([str(suite), str(servers.ROOT)]),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    python = str(venv / "bin" / "python")
    runner = [python, "-m", "tests.tasks_suite.run"]

    ready = subprocess.run([*runner, "ready"], cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=120)
    command = [str(venv / "bin" / "celery"), *servers.worker_command("django-suite")[1:]]  # on Django 6.1
    worker_process = servers.Process("worker-django-suite", command, env)
    try:
        worker_process.wait_for_output("ready.", timeout=60)
        worker = subprocess.run(
            [*runner, "worker"], cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        worker_process.stop()

    for name, phase in (("ready", ready), ("worker", worker)):
        (servers.ARTIFACTS / f"django-task-tests-{name}.log").write_text(phase.stdout + phase.stderr)
        sys.stdout.write(phase.stdout[-3000:])
    assert ready.returncode == 0, f"see test-artifacts/django-task-tests-ready.log:\n{ready.stdout[-6000:]}"
    assert worker.returncode == 0, f"see test-artifacts/django-task-tests-worker.log:\n{worker.stdout[-6000:]}"
