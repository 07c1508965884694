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
    assert "4 kept, 0 broken" in result.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    # The state machine (bottom of jobs) reaching up into the worker's task, a service into a view,
    # an adapter into a service, a rule into the models, and a web helper into a view.
    back_edges = {
        "rules/states.py": "import tasks.runner",
        "services/queues.py": "from jobs.api import views",
        "adapters/dispatch.py": "from jobs.services import selectors",
        "rules/retry.py": "from jobs import models",
        "api/serializers.py": "from jobs.api import views",
    }
    for module, line in back_edges.items():
        with (tree / "jobs" / module).open("a") as source:
            source.write(f"\n{line}  # noqa\n")

    result = lint_imports(tree)

    assert result.returncode != 0
    assert "jobs is not allowed to import tasks" in result.stdout
    assert "jobs.rules.states -> tasks.runner" in result.stdout
    assert "jobs.services.queues -> jobs.api.views" in result.stdout
    assert "jobs.adapters.dispatch -> jobs.services.selectors" in result.stdout
    assert "jobs.rules.retry -> jobs.models" in result.stdout
    assert "jobs.api.serializers -> jobs.api.views" in result.stdout


def test_jobs_is_laid_out_by_role():
    """The folders show the layers: a handful of modules directly under jobs/, the rest by role."""
    modules = sorted(path.name for path in (ROOT / "jobs").glob("*.py"))

    assert len(modules) <= 12, modules
    for package in ("api", "services", "rules", "adapters", "devstack", "admin"):
        assert (ROOT / "jobs" / package / "__init__.py").is_file(), package
