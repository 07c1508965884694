"""The import contract (.importlinter) holds, and it is not vacuous: a back-edge breaks it."""

import shutil
import subprocess
from pathlib import Path

from tests.servers import ROOT, python

PACKAGES = ("jobqueue_site", "jobs", "tasks")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    binary = str(Path(python()).parent / "lint-imports")
    return subprocess.run([binary, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_layers_point_one_way():
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    # The state machine (bottom of jobs) reaching up into the worker's task, and a service into a view.
    with (tree / "jobs" / "states.py").open("a") as states:
        states.write("\nimport tasks.runner  # noqa\n")
    with (tree / "jobs" / "services" / "queues.py").open("a") as queues:
        queues.write("\nfrom jobs import api  # noqa\n")

    result = lint_imports(tree)

    assert result.returncode != 0
    assert "jobs is not allowed to import tasks" in result.stdout
    assert "jobs.states -> tasks.runner" in result.stdout
    assert "jobs.services.queues -> jobs.api" in result.stdout
