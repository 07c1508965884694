"""The examples of README.md and docs/**/*.md cannot rot: a pytest plugin (pytest.ini loads it
with `-p tests.docs_examples`) that collects every fenced block of them with Sybil.

Each block carries a marker in an HTML comment on the line before it:

- `<!-- run -->`: python runs (in one namespace per document, Django set up); bash runs with
  `bash -e` in the checkout;
- `<!-- run-by: tests/e2e/test_x.py -->`: the named test runs it; that file must exist and read
  the document (name its path) or contain each of the block's lines;
- `<!-- sketch -->`: python compiles and its imports from jobs, tasks and jobqueue_client
  resolve; bash passes `bash -n`; json and yaml parse.

A `text` or `console` block is output and needs no marker; any other unmarked block fails.
Whatever its marker, a block also fails on the breaks that bit readers before:

- a shell command starting with a bare `python` (the README's venv is `.venv/bin/python`);
- a python block registering a job type or schedule the project already has (it crashes at
  import);
- a command naming a job type that `make run` does not have (one that exists only in a sketch,
  not in a module the document loads with `JOB_HANDLER_MODULES=... make run`);
- a handler or task module (`# package/module.py` on its first line) whose document does not
  show `JOB_HANDLER_MODULES=...` set for `make run`, so `make run`'s workers never load it.
"""

import ast
import functools
import importlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sybil import Document, Region, Sybil
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = {"text", "console"}
LANGUAGES = {"python", "bash", "json", "yaml", *OUTPUT}
MARKER = re.compile(r"<!--\s*(run|sketch|run-by:\s*(\S+))\s*-->$")
CHECKED_PACKAGES = ("jobs", "tasks", "jobqueue_client")  # jobs and tasks need Django
# A command word at the start of a shell command: after a line start, `;`, `&&`, `||`, `|` or `$(`.
BARE_PYTHON = re.compile(r"(?:^|[;&|(]\s*|\$\(\s*)(?:env\s+)?(?:[A-Z_]+=\S*\s+)*(python3?)\s")
TYPE_IN_COMMAND = re.compile(
    r"manage\.py jobs (?:submit|limits set|limits clear) ([\w.-]+)|--type ([\w.-]+)|\"(?:job_)?type\": \"([\w.-]+)\""
)


@dataclass
class Block:
    language: str
    source: str
    marker: str | None  # "run", "sketch", "run-by" or None
    runner: str | None  # run-by's test file
    document: Path
    text: str  # the whole document


def _marker(text_before: str) -> tuple[str | None, str | None]:
    before = text_before.rstrip()
    if not before.endswith("-->"):
        return None, None
    found = MARKER.search(before[before.rfind("<!--") :])
    if not found:
        return None, None
    return ("run-by", found.group(2)) if found.group(2) else (found.group(1), None)


def parse_blocks(document: Document):
    for region in FencedCodeBlockLexer(language=r"[\w+-]*")(document):
        marker, runner = _marker(document.text[: region.start])
        language = region.lexemes["language"]
        source = str(region.lexemes["source"])
        block = Block(language, source, marker, runner, Path(document.path), document.text)
        yield Region(region.start, region.end, block, evaluate)


def evaluate(example) -> None:
    block: Block = example.parsed
    if block.language not in LANGUAGES:
        raise AssertionError(f"a code block needs one of the languages {sorted(LANGUAGES)}, not {block.language!r}")
    if block.marker is None and block.language not in OUTPUT:
        raise AssertionError(
            "unmarked code block: put <!-- run -->, <!-- sketch --> or <!-- run-by: tests/... --> "
            "on the line before it, or make it a text block"
        )
    if block.language == "bash":
        check_shell(block)
    elif block.language == "python":
        check_python(block, example.namespace)
    elif block.language == "json" and block.marker == "sketch":
        json.loads(block.source)
    elif block.language == "yaml" and block.marker == "sketch":
        import yaml

        yaml.safe_load(block.source)
    if block.marker == "run-by":
        check_runner(block)


def check_runner(block: Block) -> None:
    test = ROOT / block.runner
    assert test.is_file(), f"run-by names {block.runner}, which does not exist"
    code = test.read_text()
    try:
        named = block.document.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        named = str(block.document)
    lines = [line.strip() for line in block.source.splitlines() if line.strip()]
    assert named in code or all(line in code for line in lines), (
        f"{block.runner} neither reads {named} nor contains the block's lines"
    )


# --- shell -------------------------------------------------------------------------------


def check_shell(block: Block) -> None:
    for line in block.source.replace("\\\n", " ").splitlines():
        command = line.split(" #", 1)[0]
        if BARE_PYTHON.search(command):
            raise AssertionError(f"bare `python` in {line.strip()!r}: the README's venv runs it, `.venv/bin/python`")
        for groups in TYPE_IN_COMMAND.findall(command):
            name = next(filter(None, groups))
            if name not in make_run_types() | loaded_types(block.text):
                raise AssertionError(
                    f"{line.strip()!r} names the job type {name!r}, which `make run` does not have "
                    f"(it has {', '.join(sorted(make_run_types()))})"
                )
            if name not in make_run_types() and "manage.py" in command and "JOB_HANDLER_MODULES=" not in command:
                missing = f"this manage.py knows {name!r} only with JOB_HANDLER_MODULES set"
                raise AssertionError(f"{line.strip()!r}: {missing}")
    if block.marker == "sketch":
        done = subprocess.run(["bash", "-n"], input=block.source, text=True, capture_output=True)
        assert done.returncode == 0, done.stderr
    elif block.marker == "run":
        done = subprocess.run(["bash", "-e"], input=block.source, text=True, capture_output=True, cwd=ROOT, timeout=300)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


# --- python ------------------------------------------------------------------------------


def check_python(block: Block, namespace: dict) -> None:
    tree = ast.parse(block.source, filename=str(block.document))
    builtin = make_run_types() | declared_names("schedule")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in {"job_type", "schedule"} and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and name.value in builtin:
                raise AssertionError(
                    f"line {node.lineno}: {_called(node)}({name.value!r}) registers a name the project "
                    "already has: it fails at import; give the example a name of its own"
                )
    module = _module_path(block.source)
    if module and re.search(r"@(job_type|task)\b", block.source):
        check_handler_modules_set(block, module)
    if block.marker == "sketch":
        check_imports(tree)
    elif block.marker == "run":
        setup_django()
        exec(compile(tree, str(block.document), "exec"), namespace)


def _called(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


def _module_path(source: str) -> str | None:
    first = source.split("\n", 1)[0]
    found = re.fullmatch(r"#\s*([\w/]+)\.py", first.strip())
    return found.group(1).replace("/", ".") if found else None


def check_handler_modules_set(block: Block, module: str) -> None:
    """`make run`'s web app and workers load a module only when JOB_HANDLER_MODULES names it (or a
    package beside it); the document must show that for `make run`."""
    package = module.rsplit(".", 1)[0]
    for found in re.finditer(r"JOB_HANDLER_MODULES=(\S+)[^\n]*make run", _shell_text(block.text)):
        named = found.group(1).strip("'\"").split(",")
        if module in named or any(name.rsplit(".", 1)[0] == package for name in named):
            return
    raise AssertionError(
        f"{module} is a module of handlers or tasks, but the document never shows "
        f"`JOB_HANDLER_MODULES={module} make run`: `make run`'s workers would not load it"
    )


def loaded_types(text: str) -> frozenset[str]:
    """The job types the document declares in modules it also shows `make run` loading."""
    names = set()
    for source in re.findall(r"```python\n(.*?)```", text, re.S):
        module = _module_path(source)
        if module and re.search(rf"JOB_HANDLER_MODULES=\S*\b{re.escape(module)}\b[^\n]*make run", _shell_text(text)):
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call) and _called(node) == "job_type" and node.args:
                    names.add(getattr(node.args[0], "value", None))
    return frozenset(names)


def _shell_text(text: str) -> str:
    return "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))


def check_imports(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules, names = [node.module], [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [alias.name for alias in node.names], []
        else:
            continue
        for module in modules:
            if module.split(".")[0] not in CHECKED_PACKAGES:
                continue
            if module.split(".")[0] != "jobqueue_client":
                setup_django()
            imported = importlib.import_module(module)
            for name in names:
                if not hasattr(imported, name):
                    importlib.import_module(f"{module}.{name}")  # a submodule, or ImportError


# --- what the project has ----------------------------------------------------------------


@functools.cache
def declared_names(function: str) -> frozenset[str]:
    """The first string argument of every `function(...)` call (or decorator) in tasks/."""
    names = set()
    for path in (ROOT / "tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            first = node.args[0] if isinstance(node, ast.Call) and _called(node) == function and node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return frozenset(names)


def make_run_types() -> frozenset[str]:
    """The job types of `make run`: the built-in ones and the demonstration types."""
    return declared_names("job_type")


def setup_django() -> None:
    """Django with the tests' settings if the test session set it up, else a throwaway one."""
    from django.apps import apps

    if apps.ready:
        return
    import django

    var = tempfile.mkdtemp(prefix="jq-docs-")
    defaults = {
        "DJANGO_SETTINGS_MODULE": "jobqueue_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": "q7Rz2xW9vKpL4mN8bT3cY6hJ1dF5gS0aE2uI7oP9wQ4rX8zB3nM6vC1kL5jH0tG",
        "ALLOWED_HOSTS": "localhost",
        "JOBQUEUE_VAR_DIR": var,
        "JOBQUEUE_DEV_ENV": "0",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    django.setup()


# --- collection --------------------------------------------------------------------------

SYBIL = Sybil(parsers=[parse_blocks], patterns=["*.md"], path=str(ROOT))
_collect = SYBIL.pytest()


def documented(path: Path) -> bool:
    try:
        relative = path.resolve().relative_to(ROOT)
    except ValueError:
        return False
    if relative == Path("README.md"):
        return True
    return relative.parts[0] == "docs" and relative.suffix == ".md" and "_build" not in relative.parts


def pytest_collect_file(file_path: Path, parent):
    if documented(file_path):
        return _collect(file_path, parent)
    return None


def failures(path: Path) -> list[str]:
    """Each failing block of the Markdown file `path`, as `line N: message` (for the tests)."""
    found = []
    document = Document.parse(str(path), parse_blocks)
    for example in document:
        try:
            example.evaluate()
        except Exception as error:  # noqa: BLE001  (every failure is reported)
            found.append(f"line {example.line}: {type(error).__name__}: {error}")
    return found
