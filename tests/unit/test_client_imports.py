"""The client package stands alone: it imports the standard library, httpx and itself, nothing of the project."""

import ast
import subprocess
import sys

from tests.servers import ROOT

SOURCE = ROOT / "jobqueue_client" / "src"
ALLOWED = {"httpx", "jobqueue_client"}


def imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_client_modules_import_only_the_standard_library_and_httpx():
    modules = sorted(SOURCE.rglob("*.py"))
    assert len(modules) >= 5

    outside = {
        f"{module.relative_to(SOURCE)}: {root}"
        for module in modules
        for root in imported_roots(module)
        if root not in ALLOWED and root not in sys.stdlib_module_names
    }

    assert not outside


def test_importing_the_client_loads_nothing_of_django_or_the_project():
    project = ("django", "rest_framework", "celery", "jobs", "tasks", "jobqueue_site")
    script = (
        f"import sys; import jobqueue_client; print(sorted(m for m in sys.modules if m.split('.')[0] in {project!r}))"
    )

    # Run from the client's source tree alone, not the checkout, so that nothing of the project is on the path.
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(SOURCE)!r}); {script}"],
        cwd=SOURCE, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
