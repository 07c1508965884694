"""The generated reference (docs/reference/) holds every URL, command, metric and environment variable.

Each check reads the code's own list another way than the extension does (the resolver's names
against the documented paths resolved, the parsers walked anew, prometheus_client's registry and
the system collector run, settings.py executed with a recording environment) and compares it
with the first column of the extension's tables; a second test drops one entry and sees the
check report it.
"""

import ast
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Callable

import pytest
from django.urls import get_resolver, resolve

from tests.servers import ROOT

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import jobqueue_reference as reference  # noqa: E402

APP_SOURCES = [path for package in ("jobs", "tasks", "jobqueue_site") for path in (ROOT / package).rglob("*.py")]


def first_column(rows: list[tuple]) -> set[str]:
    return {row[0].astext() for row in rows}


# URLs: every named route resolves from a documented path, the admin from /admin/.


def url_rows() -> list[tuple]:
    return reference.schema_rows() + reference.other_url_rows()


def documented_url_names(rows: list[tuple]) -> set[str]:
    names = set()
    for path in first_column(rows):
        match = resolve(re.sub(r"\{\w+\}", "x", path.rstrip("…")))
        names.add(f"{match.namespace}:" if match.namespace else match.url_name)
    return names


def url_names() -> set[str]:
    resolver = get_resolver()
    return {name for name in resolver.reverse_dict if isinstance(name, str)} | {
        f"{namespace}:" for namespace in resolver.namespace_dict
    }


# Commands: every parser and subparser, each with every option of its own.


def parsers() -> dict[str, object]:
    from django.core.management import load_command_class

    found = {}

    def walk(name, parser):
        found[name] = parser
        for group in parser._subparsers._group_actions if parser._subparsers else ():
            for subname, subparser in group.choices.items():
                walk(f"{name} {subname}", subparser)

    commands = ROOT / "jobs" / "management" / "commands"
    for path in sorted(commands.glob("[!_]*.py")):
        walk(path.stem, load_command_class("jobs", path.stem).create_parser("manage.py", path.stem))
    return found


def cli_rows() -> list[tuple]:
    return reference.cli_rows(reference.jobs_app_commands())


# Metrics: prometheus_client's default registry once the web app is built, and the gauges the
# web app's system collector yields when its sources answer.


def metric_rows() -> list[tuple]:
    return reference.job_metric_rows() + reference.system_metric_rows() + reference.process_metric_rows()


def metric_names(monkeypatch) -> set[str]:
    from prometheus_client import REGISTRY

    from jobs.api import metrics_view
    from jobs.services import limit_selectors, selectors

    reference.load_web_app()
    monkeypatch.setattr(metrics_view.broker, "queue_lengths", lambda: {"high": 1})
    monkeypatch.setattr(metrics_view.broker, "dead_letter_length", lambda: 0)
    monkeypatch.setattr(metrics_view.broker, "workers_online", lambda: [])
    monkeypatch.setattr(selectors, "queue_latencies", lambda now: {"high": 1.0})
    monkeypatch.setattr(selectors, "scheduled_count", lambda: 0)
    monkeypatch.setattr(limit_selectors, "waiting_by_type", lambda: {"report": 1})
    system = [family for _name, source, _errors in metrics_view.SystemCollector.SOURCES for family in source()]
    return {family.name for family in [*REGISTRY.collect(), *system]}


# Settings: settings.py run with an environment that records every name looked up, once on
# SQLite without a key (the dev key branch) and once on PostgreSQL with one.


class RecordingEnviron(dict):
    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def variables_settings_reads(monkeypatch, tmp_path) -> set[str]:
    runs = [
        {"DEBUG": "1", "JOBQUEUE_DEV_ENV": "0", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"},
        {"DEBUG": "1", "SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://user@127.0.0.1:1/db"},
    ]
    read = set()
    for values in runs:
        environ = RecordingEnviron({"JOBQUEUE_VAR_DIR": str(tmp_path), **values})
        with monkeypatch.context() as patch:
            patch.setattr(os, "environ", environ)
            runpy.run_path(str(reference.SETTINGS_FILE))
        read |= environ.read
    return read


def variables_read_outside_settings() -> set[str]:
    pattern = re.compile(r"""os\.environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")
    return {
        name
        for path in APP_SOURCES
        if path != reference.SETTINGS_FILE
        for name in pattern.findall(path.read_text())
        if name != "DJANGO_SETTINGS_MODULE"
    }


# The checks: (the code's own list, the extension's rows, the names those rows document).

Check = tuple[Callable[..., set[str]], Callable[[], list[tuple]], Callable[[list[tuple]], set[str]]]
CHECKS: dict[str, Check] = {
    "urls": (lambda monkeypatch, tmp_path: url_names(), url_rows, documented_url_names),
    "commands": (lambda monkeypatch, tmp_path: set(parsers()), cli_rows, first_column),
    "metrics": (lambda monkeypatch, tmp_path: metric_names(monkeypatch), metric_rows, first_column),
    "settings": (variables_settings_reads, reference.environment_rows, first_column),
    "outside settings": (
        lambda monkeypatch, tmp_path: variables_read_outside_settings(),
        reference.outside_rows,
        first_column,
    ),
}


@pytest.mark.parametrize("name", CHECKS)
def test_the_reference_holds_every_entry_of_the_code(name, monkeypatch, tmp_path):
    expected, rows, documented = CHECKS[name]

    code_list = expected(monkeypatch, tmp_path)

    assert len(code_list) >= 5
    assert code_list - documented(rows()) == set()


@pytest.mark.parametrize("name", CHECKS)
def test_an_entry_left_out_fails_the_check(name, monkeypatch, tmp_path):
    expected, rows, documented = CHECKS[name]
    code_list, all_rows = expected(monkeypatch, tmp_path), rows()
    left_out = sorted(code_list)[len(code_list) // 2]

    kept = [row for row in all_rows if left_out not in documented([row])]

    assert len(kept) < len(all_rows)
    assert code_list - documented(kept) == {left_out}


def test_every_option_of_a_command_is_documented_on_its_row_or_its_command_s():
    rows = {row[0].astext(): row[2].astext() if hasattr(row[2], "astext") else "" for row in cli_rows()}
    django_options = set(parsers()["run_mover"]._option_string_actions) - {"--interval", "--once"}

    for name, parser in parsers().items():
        shown = " ".join(text for command, text in rows.items() if name.startswith(command))
        options = set(parser._option_string_actions) - django_options - {"-h", "--help"}
        assert {option for option in options if option not in shown} == set(), name


def test_every_schema_operation_is_a_row():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    operations = {(path, method.upper()) for path, methods in paths.items() for method in methods}

    assert {(row[0].astext(), row[1]) for row in reference.schema_rows()} == operations


def test_a_variable_read_in_the_settings_gets_its_default_type_and_comment(tmp_path):
    changed = tmp_path / "settings.py"
    text = reference.SETTINGS_FILE.read_text()
    changed.write_text(text + "\n# How many knobs turn at once.\nJOB_KNOBS = env_int('JOB_KNOBS', 2 * 3)\n")

    rows = {row[0].astext(): row for row in reference.environment_rows(changed)}

    assert "JOB_KNOBS" not in first_column(reference.environment_rows())
    variable, setting, kind, default, description = rows["JOB_KNOBS"]
    assert (setting, kind, default.astext(), description) == (
        "JOB_KNOBS",
        "integer",
        "2 * 3 (6)",
        "How many knobs turn at once.",
    )


def test_every_metric_family_in_the_source_is_found():
    calls = [
        node.func
        for path in APP_SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("MetricFamily")
    ]

    assert len(reference.metric_families_in_source()) == len(calls) >= 6


def test_the_reference_pages_build_without_a_warning(tmp_path):
    source = tmp_path / "src"
    (source / "reference").mkdir(parents=True)
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        (source / "reference" / page.name).write_text(page.read_text())
    (source / "index.md").write_text("# jobqueue\n\n```{toctree}\nreference/index\n```\n")
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'docs' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'jobqueue_reference']\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "SECRET_KEY", "DATABASE_URL"}}
    env["JOBQUEUE_VAR_DIR"] = str(tmp_path / "var")

    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(source), str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    pages = {page.stem: page.read_text() for page in (tmp_path / "out" / "reference").glob("*.html")}
    assert "JOB_LEASE_SECONDS" in pages["settings"]
    assert "jobs_submitted" in pages["metrics"] and "queue_depth" in pages["metrics"]
    assert "create a run-time schedule" in pages["cli"] and "/submit-job" in pages["api"]
