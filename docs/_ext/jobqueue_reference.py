"""The reference pages' tables, generated from the code so that nothing is written twice.

Directives (MyST: ```{jobqueue-api} ... ```):

- ``jobqueue-api`` (``schema`` or ``other-urls``): the operations of drf-spectacular's OpenAPI
  schema, or the URL patterns the schema leaves out (health, metrics, the admin...).
- ``jobqueue-cli`` (command names; all of the jobs app when none, ``:exclude:`` some): every
  management command, subcommand and argument, read from their argparse parsers.
- ``jobqueue-metrics`` (``jobs``, ``system`` or ``process``): the job metrics module's metrics,
  the gauges built at scrape time (every ``*MetricFamily(...)`` in the app's source), and the
  rest of prometheus_client's default registry once the web app is loaded.
- ``jobqueue-settings`` (``environment``, ``outside`` or ``fixed``): the environment variables
  ``jobqueue_site/settings.py`` reads (default, type, the comment above as description), those
  read elsewhere in the app, and the settings that no variable changes.

Each ``*_rows`` function returns the rows a directive renders, so tests can compare them with
the code's own lists.
"""

import argparse
import ast
import io
import os
import re
import secrets
import sys
import tokenize
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = ROOT / "jobqueue_site" / "settings.py"
APP_PACKAGES = ("jobs", "tasks", "jobqueue_site")


def setup_django() -> None:
    """Django configured as in development (DEBUG shows the dev-only routes), without touching var/."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


# Rendering ---------------------------------------------------------------------------------


def code(text: str) -> nodes.paragraph:
    return nodes.paragraph("", "", nodes.literal(text=text))


def table(headers: tuple[str, ...], rows: list[tuple]) -> nodes.table:
    """A table of `rows`; a cell is a node, or text (a string) shown as is."""
    body = [_row(row) for row in rows]
    group = nodes.tgroup(cols=len(headers))
    for column, header in enumerate(headers):  # widths for the text builder: the longest cell, at most 50
        width = max([len(header)] + [len(row[column].astext()) for row in body])
        group += nodes.colspec(colwidth=min(width, 50))
    group += nodes.thead("", _row(headers))
    group += nodes.tbody("", *body)
    return nodes.table("", group)


def _row(cells: tuple) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        row += nodes.entry("", cell if isinstance(cell, nodes.Node) else nodes.paragraph(text=str(cell or "—")))
    return row


class _Choice(SphinxDirective):
    """A directive whose one argument chooses what it renders."""

    required_arguments = 1
    parts: dict = {}
    headers: dict = {}

    def run(self) -> list[nodes.Node]:
        part = self.arguments[0]
        if part not in self.parts:
            raise self.error(f"{self.name}: unknown part {part!r}; one of {', '.join(self.parts)}")
        setup_django()
        return [table(self.headers[part], self.parts[part]())]


# API ---------------------------------------------------------------------------------------


def first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


def route(pattern) -> str:
    """A URL pattern's route in the schema's spelling: `jobs/<str:job_id>` -> `jobs/{job_id}`."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern)).lstrip("^").rstrip("$")


def url_patterns(patterns=None, prefix: str = "/"):
    """(path, pattern) of every URL pattern, the admin's as one entry: its routes are Django's."""
    from django.urls import URLResolver, get_resolver

    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        path = prefix + route(pattern)
        if isinstance(pattern, URLResolver) and pattern.app_name != "admin":
            yield from url_patterns(pattern.url_patterns, path)
        else:
            yield path, pattern


def schema_rows() -> list[tuple]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    default_security = schema.get("security", [])
    rows = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            summary = operation.get("summary") or first_paragraph(operation.get("description", ""))
            security = operation.get("security", default_security)
            schemes = [name for requirement in security for name in requirement]
            auth = ", ".join(schemes) + (" (or none)" if {} in security else "") if schemes else "none"
            rows.append((code(path), method.upper(), summary, auth))
    return rows


def other_url_rows() -> list[tuple]:
    from django.urls import URLResolver
    from drf_spectacular.generators import SchemaGenerator

    in_schema = set(SchemaGenerator().get_schema(request=None, public=True)["paths"])
    rows = []
    for path, pattern in url_patterns():
        if path in in_schema:
            continue
        if isinstance(pattern, URLResolver):
            rows.append(
                (code(path + "…"), pattern.namespace, f"the Django admin site ({len(pattern.url_patterns)} routes)")
            )
            continue
        view = getattr(pattern.callback, "view_class", pattern.callback)
        doc = first_paragraph(view.__doc__ or "")
        rows.append((code(path), pattern.name, doc or f"{view.__module__}.{view.__qualname__}"))
    return rows


class ApiDirective(_Choice):
    parts = {"schema": schema_rows, "other-urls": other_url_rows}
    headers = {"schema": ("Path", "Method", "Summary", "Authentication"), "other-urls": ("Path", "Name", "What")}


# CLI ---------------------------------------------------------------------------------------


def _argument(action: argparse.Action) -> nodes.list_item:
    if action.option_strings:
        takes_value = action.nargs != 0
        usage = ", ".join(action.option_strings) + (f" {action.metavar or action.dest.upper()}" if takes_value else "")
    else:
        usage = action.metavar or action.dest
    notes = [action.help] if action.help and action.help != argparse.SUPPRESS else []
    if action.choices:
        notes.append("one of " + ", ".join(map(str, action.choices)))
    if action.required and action.option_strings:
        notes.append("required")
    if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
        notes.append(f"default: {action.default}")
    text = nodes.Text(" — " + "; ".join(notes) if notes else "")
    return nodes.list_item("", nodes.paragraph("", "", nodes.literal(text=usage), text))


def _parser_rows(name: str, parser: argparse.ArgumentParser, help: str, skip: set[str]) -> list[tuple]:
    arguments = [
        action
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and action.dest not in skip
    ]
    listing = nodes.bullet_list("", *map(_argument, arguments)) if arguments else ""
    rows = [(code(name), help, listing)]
    for sub in parser._actions:
        if isinstance(sub, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in sub._choices_actions}
            for subname, subparser in sub.choices.items():
                # The options every subcommand shares with its command are shown once, on the command.
                shared = skip | {action.dest for action in arguments if action.option_strings}
                rows += _parser_rows(f"{name} {subname}", subparser, helps.get(subname, ""), shared)
    return rows


def jobs_app_commands() -> list[str]:
    from django.core.management import get_commands

    return sorted(name for name, app in get_commands().items() if app == "jobs")


def cli_rows(names: list[str]) -> list[tuple]:
    from django.core.management import BaseCommand, load_command_class

    django_options = {action.dest for action in BaseCommand().create_parser("manage.py", "x")._actions}
    rows = []
    for name in names:
        command = load_command_class("jobs", name)
        parser = command.create_parser("manage.py", name)
        rows += _parser_rows(name, parser, command.help, django_options)
    return rows


class CliDirective(SphinxDirective):
    optional_arguments = 20
    option_spec = {"exclude": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        setup_django()
        excluded = set(self.options.get("exclude", "").split())
        names = self.arguments or [name for name in jobs_app_commands() if name not in excluded]
        return [table(("Command", "What it does", "Arguments"), cli_rows(names))]


# Metrics -----------------------------------------------------------------------------------

EXPOSED_AS = {"counter": "{0}_total", "histogram": "{0}_bucket, {0}_sum, {0}_count"}


def _metric_row(name: str, kind: str, labels, help: str, where: str) -> tuple:
    return (code(name), kind, ", ".join(labels) or "—", help, EXPOSED_AS.get(kind, "{}").format(name), where)


def job_metrics():
    """(metric, family) of every metric the job metrics module defines."""
    from prometheus_client.metrics import MetricWrapperBase

    from jobs.adapters import metrics

    return [(value, value.describe()[0]) for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]


def job_metric_rows() -> list[tuple]:
    from jobs.adapters import metrics

    return [
        _metric_row(family.name, family.type, metric._labelnames, family.documentation, metrics.__name__)
        for metric, family in job_metrics()
    ]


def _constant(node: ast.expr, names: dict[str, str]) -> str:
    if isinstance(node, ast.Name):
        return names[node.id]
    return ast.literal_eval(node)


def metric_families_in_source() -> list[tuple]:
    """(name, type, labels, help, module) of every `XxxMetricFamily(name, help, ...)` in the app's
    source; a name or help given as a local variable is read from its assignment."""
    found = []
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            strings = {
                target.id: node.value.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for call in ast.walk(tree):
                callee = getattr(call, "func", None)
                callee = getattr(callee, "id", getattr(callee, "attr", ""))
                if isinstance(call, ast.Call) and callee.endswith("MetricFamily") and len(call.args) >= 2:
                    kind = callee.removesuffix("MetricFamily").lower()
                    labels = next((_constant(k.value, strings) for k in call.keywords if k.arg == "labels"), ())
                    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                    found.append(
                        (_constant(call.args[0], strings), kind, labels, _constant(call.args[1], strings), module)
                    )
    return found


def system_metric_rows() -> list[tuple]:
    return [_metric_row(*family) for family in metric_families_in_source()]


def load_web_app() -> None:
    """Build the web app as gunicorn does: its middleware registers the request metrics."""
    from django.core.handlers.wsgi import WSGIHandler

    WSGIHandler()


def process_metric_rows() -> list[tuple]:
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    load_web_app()
    ours = {family.name for _metric, family in job_metrics()}
    rows = []
    for collector in list(REGISTRY._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            families = [(collector.describe()[0], collector._labelnames)]
        else:
            families = [
                (family, sorted({key for sample in family.samples for key in sample.labels}))
                for family in collector.collect()
            ]
        for family, labels in families:
            if family.name not in ours:
                where = "default registry" if isinstance(collector, MetricWrapperBase) else collector.__module__
                rows.append(_metric_row(family.name, family.type, labels, family.documentation, where))
    return rows


class MetricsDirective(_Choice):
    parts = {"jobs": job_metric_rows, "system": system_metric_rows, "process": process_metric_rows}
    headers = dict.fromkeys(parts, ("Metric", "Type", "Labels", "Help", "Exposed as", "Defined in"))


# Settings ----------------------------------------------------------------------------------

READERS = {
    "env_str": "text",
    "env_bool": "boolean",
    "env_int": "integer",
    "env_float": "number",
    "env_list": "comma-separated list",
    "_env": None,  # its fourth argument says
    "get": "text",  # os.environ.get
    "getenv": "text",
}


class Source:
    """A module's syntax tree with its comments, to read environment variables and their comments."""

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text()
        self.lines = self.text.splitlines()
        self.tree = ast.parse(self.text)
        self.comments: dict[int, str] = {}
        for token in tokenize.generate_tokens(io.StringIO(self.text).readline):
            if token.type == tokenize.COMMENT:
                self.comments[token.start[0]] = token.string.lstrip("#").strip()
        self.parents = {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}

    def comment_above(self, line: int) -> str:
        """The comment lines right above `line`, or its own trailing comment."""
        above = []
        while line - 1 - len(above) in self.comments and self.lines[line - 2 - len(above)].lstrip().startswith("#"):
            above.insert(0, self.comments[line - 1 - len(above)])
        return " ".join(above) or self.comments.get(line, "")

    def segment(self, node: ast.expr) -> str:
        text = " ".join(ast.get_source_segment(self.text, node).split())
        try:
            value = eval(compile(ast.Expression(node), "", "eval"), {"__builtins__": {}})  # arithmetic only
        except Exception:
            return text
        arithmetic = isinstance(value, int | float) and not isinstance(value, bool) and str(value) != text
        return f"{text} ({value})" if arithmetic else text

    @staticmethod
    def _reader(node: ast.AST) -> str:
        """The name of the reader `node` calls, "" if it is no call of one (`get` only as os.environ.get)."""
        func = getattr(node, "func", None)
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return "" if name in {"get", "getenv"} and "environ" not in ast.unparse(func) else name

    def reads(self):
        """(variable, reader, call) of every environment read with a constant name: by a known
        reader, or by a function of the module that reads the variable its first parameter names."""
        readers = set(READERS)
        functions = [node for node in ast.walk(self.tree) if isinstance(node, ast.FunctionDef) and node.args.args]
        for _ in range(3):  # readers of readers of readers
            readers |= {
                function.name
                for function in functions
                for call in ast.walk(function)
                if self._reader(call) in readers
                and call.args
                and getattr(call.args[0], "id", None) == function.args.args[0].arg
            }
        for call in ast.walk(self.tree):
            constant = isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)
            if constant and (reader := self._reader(call)) in readers:
                yield call.args[0].value, reader, call

    def enclosing(self, node: ast.AST, kinds=(ast.stmt,)) -> ast.AST | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, kinds):
                return node
        return None

    def settings_of(self, node: ast.AST) -> list[str]:
        """The module-level names whose value the expression `node` feeds."""
        statement = node
        while self.parents.get(statement) is not self.tree:
            statement = self.parents[statement]
        if isinstance(statement, ast.FunctionDef):
            return [
                name
                for user in ast.walk(self.tree)
                if isinstance(user, ast.Call) and getattr(user.func, "id", None) == statement.name
                for name in self.settings_of(user)
            ]
        assigned = (target for node in ast.walk(statement) if isinstance(node, ast.Assign) for target in node.targets)
        return [target.id for target in assigned if isinstance(target, ast.Name) and target.id.isupper()]

    def description(self, call: ast.Call) -> str:
        statement = self.enclosing(call)
        function = self.enclosing(call, ast.FunctionDef)
        docstring = (ast.get_docstring(function) or "").split("\n\n")[0] if function else ""
        return (
            self.comment_above(call.lineno)
            or self.comment_above(statement.lineno)
            or (function and self.comment_above(function.lineno))
            or " ".join(docstring.split())
        )


def environment_rows(path: Path = SETTINGS_FILE) -> list[tuple]:
    """(variable, settings, type, default, description), one row per variable, in reading order."""
    source = Source(path)
    found: dict[str, dict] = {}
    for name, reader, call in sorted(source.reads(), key=lambda read: (read[2].lineno, read[2].col_offset)):
        entry = found.setdefault(name, {"settings": [], "kind": "", "default": "", "descriptions": []})
        parent = source.parents[call]
        if len(call.args) > 1:
            default = source.segment(call.args[1])
        elif (
            isinstance(parent, ast.BoolOp)
            and parent.values[0] is call
            and not isinstance(source.parents[parent], ast.If)
        ):
            default = " or ".join(source.segment(value) for value in parent.values[1:])
        else:
            default = ""
        setting_names = source.settings_of(call)
        entry["settings"] += [setting for setting in setting_names if setting not in entry["settings"]]
        entry["kind"] = entry["kind"] or READERS.get(reader) or (len(call.args) > 3 and ast.literal_eval(call.args[3]))
        entry["default"] = entry["default"] or default
        # The comment of the read that sets the setting of the same name, else of one that sets a
        # setting; of the others only when no read sets one.
        entry["descriptions"].append((name not in setting_names, not setting_names, source.description(call)))
    return [
        (
            code(name),
            ", ".join(entry["settings"]),
            entry["kind"],
            code(entry["default"]) if entry["default"] else "",
            next((text for *_, sets_none, text in sorted(entry["descriptions"]) if text and not sets_none), "")
            or next((text for *_, text in entry["descriptions"] if text and not entry["settings"]), ""),
        )
        for name, entry in found.items()
    ]


def outside_rows() -> list[tuple]:
    """Variables read elsewhere in the app: (variable, module, description)."""
    rows: dict[str, tuple] = {}
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS_FILE:
                continue
            source = Source(path)
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for name, _reader, call in source.reads():
                if name != "DJANGO_SETTINGS_MODULE":
                    rows.setdefault(name, (code(name), module, source.description(call)))
    return sorted(rows.values(), key=lambda row: row[0].astext())


def fixed_rows(path: Path = SETTINGS_FILE) -> list[tuple]:
    """The module-level settings whose value no environment variable changes."""
    source = Source(path)
    from_environment = {setting for _name, _reader, call in source.reads() for setting in source.settings_of(call)}
    rows = []
    for statement in source.tree.body:
        if not isinstance(statement, ast.Assign):
            continue
        for target in statement.targets:
            if isinstance(target, ast.Name) and target.id.isupper() and target.id not in from_environment:
                value = source.segment(statement.value)
                shown = code(value) if len(value) <= 60 else "see jobqueue_site/settings.py"
                rows.append((code(target.id), shown, source.comment_above(statement.lineno)))
    return rows


class SettingsDirective(_Choice):
    parts = {"environment": environment_rows, "outside": outside_rows, "fixed": fixed_rows}
    headers = {
        "environment": ("Variable", "Setting", "Type", "Default", "Description"),
        "outside": ("Variable", "Read in", "Description"),
        "fixed": ("Setting", "Value", "Description"),
    }


def setup(app) -> dict:
    app.add_directive("jobqueue-api", ApiDirective)
    app.add_directive("jobqueue-cli", CliDirective)
    app.add_directive("jobqueue-metrics", MetricsDirective)
    app.add_directive("jobqueue-settings", SettingsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
