"""docs/explanation/architecture.md's table of rules is true: each name it gives is defined in the module it
names and nowhere else in the app, and the probes below find each rule's telltale in one module."""

import ast
import re

import pytest

from tests.servers import ROOT

APP = ("jobs", "tasks", "jobqueue_site")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def app_modules() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in APP
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


def definitions() -> dict[str, set[str]]:
    """Top-level name -> the modules that define it (def, class, assignment)."""
    found: dict[str, set[str]] = {}
    for module, text in app_modules().items():
        for node in ast.parse(text).body:
            names = []
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [target.id for target in targets if isinstance(target, ast.Name)]
            for name in names:
                found.setdefault(name, set()).add(module)
    return found


def rule_rows() -> list[tuple[str, list[str], list[str], list[str]]]:
    """(rule, modules named, names in the module's cell, other names given) of each row of the table."""
    text = (ROOT / "docs/explanation/architecture.md").read_text()
    table = text.split("## Where each rule lives", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in {"Rule", "---"}:
            continue
        in_rule, in_module = (re.findall(r"`([^`]+)`", cell) for cell in cells)
        modules = [q for q in in_module if q.endswith(".py")]
        own = [q for q in in_module if IDENTIFIER.match(q)]
        rows.append((cells[0], modules, own, [q for q in in_rule if IDENTIFIER.match(q)]))
    return rows


def test_the_table_lists_the_rules():
    rows = rule_rows()
    assert len(rows) >= 15
    assert all(row[1] for row in rows), [row[0] for row in rows if not row[1]]


@pytest.mark.parametrize("rule, modules, own, names", rule_rows(), ids=lambda value: str(value)[:40])
def test_each_name_of_a_rule_is_defined_in_the_module_named_and_nowhere_else(rule, modules, own, names):
    defined = definitions()
    for module in modules:
        assert (ROOT / module).is_file(), f"{module} does not exist"
    assert not [name for name in own if name not in defined], "the table names what the app does not define"
    for name in own + names:
        if name in defined:  # a name of the app (not a word such as `UPDATE` or a model's field)
            assert defined[name] <= set(modules), f"{name} is defined in {sorted(defined[name])}, not only {modules}"


# A telltale of a rule -> the only modules where it may appear.
ONLY_IN = {
    r"\.vendor\b": {"jobs/adapters/store/__init__.py"},  # which database: the store is chosen once
    r"global_keyprefix": {"jobs/adapters/broker.py"},  # kombu's key layout
    r"\bTransition\(": {"jobs/rules/states.py"},  # the state machine's moves
    r"\b(lpush|lrem|lrange|hmget|zrangebyscore)\(": {"jobs/adapters/broker.py", "jobs/adapters/dispatch.py"},
    r"\._inplace_augment_message|\._result_cache|\._state\.|\bValueClass\b": {"jobs/adapters/internals.py"},
    # Private APIs reached by a public name: the ones the attribute probe below cannot see.
    r"_prefetched_objects_cache|\bTRANSPORT_ALIASES\b|\bprepare_threshold\b": {"jobs/adapters/internals.py"},
    r"execute\(\"(BEGIN|COMMIT)\"\)|\b(pack_commands|send_packed_command)\(": {"jobs/adapters/internals.py"},
    r"\bdef send_event\b|name=\"conf\"": {"jobs/adapters/internals.py"},
    r"\bdef after_failure\b|\bdef is_permanent\b|\bdef backoff": {"jobs/rules/retry.py"},
}


@pytest.mark.parametrize("pattern", sorted(ONLY_IN))
def test_a_rule_has_one_home(pattern):
    where = {module for module, text in app_modules().items() if re.search(pattern, text)}
    assert where, f"{pattern} appears nowhere: the probe is stale"
    assert where <= ONLY_IN[pattern], f"{pattern} appears in {sorted(where - ONLY_IN[pattern])}"


# Where a library's private attribute may be used: the one module of them, and the kombu transport
# subclass (a use as a whole). `_meta` is Django's documented Options API; `os._exit` is public.
PRIVATE_HOMES = {"jobs/adapters/internals.py", "jobs/adapters/transport.py"}
PUBLIC_UNDERSCORED = {"_meta", "_exit"}


def private_uses(text: str) -> list[str]:
    """`obj._name` on anything but self or cls, and imports of `_private` names or modules of a library."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr not in PUBLIC_UNDERSCORED and not (
                isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            ):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] not in APP:
            names = [*node.module.split("."), *(alias.name for alias in node.names)]
            if any(name.startswith("_") and not name.startswith("__") for name in names):
                found.append(f"line {node.lineno}: from {node.module} import ...")
    return found


def test_the_private_api_probe_sees_an_attribute_and_an_import_and_not_our_own_state():
    assert len(private_uses("job._prefetched_objects_cache = {}\nfrom celery._state import get_current_app")) == 2
    assert private_uses("self._pool = None\nJob._meta.db_table\nfrom ._schedules import x\nos._exit(0)") == []


def test_no_private_api_of_a_library_is_used_outside_its_one_module():
    where = {
        module: uses
        for module, text in app_modules().items()
        if module not in PRIVATE_HOMES and (uses := private_uses(text))
    }
    assert not where, f"private APIs outside jobs/adapters/internals.py: {where}"
