"""The "From a Django project" page (docs/howto/django-project.md) runs as written: its settings are the site's, its
task module is written where it says, imported by a real worker, and its enqueue and get_result
code prints what its comments say."""

import contextlib
import io
import os
import re
import sys

from django.conf import settings
from django.test import override_settings

from tests.servers import ROOT

from .conftest import wait_until_terminal

LATER = "# Later"


def readme_blocks() -> list[str]:
    text = (ROOT / "docs/howto/django-project.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run(code: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "django-project.md", "exec"), namespace)
    return out.getvalue()


def test_the_readme_example_of_djangos_task_api_runs_as_written(start_worker, tmp_path):
    configured, module, use = readme_blocks()
    path = module.splitlines()[0].removeprefix("# ")
    assert path == "billing/tasks.py"
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "__init__.py").write_text("")
    (tmp_path / path).write_text(module)
    namespace: dict = {}
    run(configured, namespace)
    assert namespace["TASKS"] == settings.TASKS

    modules = [*settings.JOB_HANDLER_MODULES, "billing.tasks"]
    paths = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    start_worker("readme", env={"PYTHONPATH": paths, "JOB_HANDLER_MODULES": ",".join(modules)})
    sys.path.insert(0, str(tmp_path))
    try:
        with override_settings(JOB_HANDLER_MODULES=modules):
            enqueue, later = use.split(LATER, 1)
            namespace = {}
            printed = run(enqueue, namespace)
            wait_until_terminal([namespace["result"].id], timeout=30)
            printed_later = run(LATER + later, namespace)
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("billing.tasks", "billing"):
            sys.modules.pop(name, None)

    assert printed == "READY\n" and "print(result.status)  # READY" in use
    assert printed_later == "{'id': 42, 'total': 30}\n"
    assert "print(result.return_value)  # {'id': 42, 'total': 30}" in use
