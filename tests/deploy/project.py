"""What the project really offers, to check the deploy files against: its entry points (Celery
app, manage.py commands, the WSGI module), the environment variables it reads, its URLs."""

import ast
import contextlib
import importlib
import importlib.util
import io
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath

import click
from django.conf import settings
from django.core.management import CommandError, get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent.parent
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"
# The image copies the project to /app (Dockerfile: WORKDIR /app, COPY . .).
IMAGE_ROOT = PurePath("/app")

# Source folders that are not the application: tests set variables for themselves, deploy/
# only consumes what the application reads.
NOT_APP = {".git", ".venv", "tests", "deploy", "docs", "var", "test-artifacts", "node_modules", "migrations"}
ENV_READER = re.compile(r"^(env_\w+|getenv)$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Variables a deployment may set that jobqueue's own code does not read, each with its reader.
THIRD_PARTY_ENV = {
    # manage.py, wsgi.py and the Celery app default it; setting it explicitly is harmless.
    "DJANGO_SETTINGS_MODULE",
    # prometheus_client: the shared directory for metrics of several processes.
    "PROMETHEUS_MULTIPROC_DIR",
    # gunicorn reads these two itself.
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    # Kubernetes: the pod's IP from the downward API, which the kubelet expands into
    # ALLOWED_HOSTS ($(POD_IP)) so Prometheus can scrape each web pod by its IP.
    "POD_IP",
}
THIRD_PARTY_PREFIXES = {
    "PYTHON": "the Python interpreter (PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE...)",
    "POSTGRES_": "the postgres image: database, user and password made on first start",
    "GF_": "Grafana: GF_<SECTION>_<KEY> overrides grafana.ini",
    "MP_": "Mailpit's settings",
}


def _python_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        if not NOT_APP.intersection(path.relative_to(ROOT).parts[:-1]):
            files.append(path)
    return files


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value):
        return node.value
    return None


def _names_read(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if ENV_READER.match(called) or (
                isinstance(func, ast.Attribute) and called in {"get", "setdefault", "pop"} and _is_environ(func.value)
            ):
                name = _literal(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _literal(node.slice)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            name = _literal(node.left)
        if name:
            names.add(name)
    return names


@cache
def env_vars_read() -> frozenset[str]:
    """Every environment variable the application's code reads (env_*(), os.environ, getenv)."""
    names: set[str] = set()
    for path in _python_files():
        names |= _names_read(ast.parse(path.read_text(), filename=str(path)))
    return frozenset(names)


@cache
def flower_options() -> frozenset[str]:
    import flower.options  # noqa: F401  (defines Flower's options)
    from tornado.options import options

    return frozenset(options._options)


def unknown_env(names, *, flower: bool = False) -> list[str]:
    """The names a container of the jobqueue image sets that nothing reads."""
    unknown = []
    for name in names:
        if name in env_vars_read() or name in THIRD_PARTY_ENV:
            continue
        if name.startswith("PYTHON"):
            continue
        # Flower takes every FLOWER_* variable as its option and refuses to start on any other.
        if flower and name.startswith("FLOWER_") and name[7:].lower().replace("_", "-") in flower_options():
            continue
        unknown.append(name)
    return unknown


def unknown_third_party_env(names) -> list[str]:
    return [name for name in names if not any(name.startswith(prefix) for prefix in THIRD_PARTY_PREFIXES)]


@dataclass
class EntryPoint:
    role: str  # web, worker, flower, flower-gate, mover, migrate or another manage.py command
    queues: list[str] = field(default_factory=list)
    port: int | None = None
    args: list[str] = field(default_factory=list)


def check_command(argv: list[str]) -> EntryPoint:
    """The entry point argv starts, after checking it exists and accepts these arguments."""
    assert argv, "empty command"
    program = PurePath(argv[0]).name
    if program == "celery":
        return _celery(argv[1:])
    if program == "gunicorn":
        return _gunicorn(argv[1:])
    if program.startswith("python") and len(argv) > 1 and argv[1] == "manage.py":
        return _manage(argv[2:])
    raise AssertionError(f"{argv} is not a jobqueue entry point (celery, gunicorn or python manage.py)")


def _celery(args: list[str]) -> EntryPoint:
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    import jobqueue_site.celery

    assert len(args) >= 3 and args[0] in {"-A", "--app"}, f"celery needs -A <app> first: {args}"
    try:
        app = find_app(args[1])
    except Exception as exc:  # celery raises whatever the import raised
        raise AssertionError(f"celery -A {args[1]}: no Celery app there ({exc})") from None
    assert app is jobqueue_site.celery.app, f"-A {args[1]} is not the jobqueue Celery app"
    subcommand, rest = args[2], args[3:]
    if subcommand == "flower":
        for arg in rest:
            name = arg.lstrip("-").split("=", 1)[0].replace("_", "-")
            assert arg.startswith("--") and name in flower_options(), f"flower has no option {arg}"
        port = next((int(arg.split("=", 1)[1]) for arg in rest if arg.startswith("--port=")), 5555)
        return EntryPoint("flower", port=port, args=rest)
    assert subcommand == "worker", f"celery {subcommand}: expected worker or flower"
    parent = click.Context(celery_cli, info_name="celery", obj=CLIContext(app=app, no_color=True, workdir=None))
    command = celery_cli.get_command(parent, "worker")
    try:
        params = command.make_context("worker", list(rest), parent=parent).params
    except click.ClickException as exc:
        raise AssertionError(f"celery worker {rest}: {exc.format_message()}") from None
    queues = list(params.get("queues") or [])
    assert queues, "a worker must name its queues with -Q (high,medium,low first, in that order)"
    unknown = set(queues) - set(jobqueue_site.celery.QUEUES)
    assert not unknown, f"-Q names queues jobqueue does not have: {sorted(unknown)}"
    order = [q for q in jobqueue_site.celery.QUEUES if q in queues]
    assert queues == order, f"-Q {','.join(queues)}: queues must be listed by priority ({order})"
    return EntryPoint("worker", queues=queues, args=rest)


def _gunicorn(args: list[str]) -> EntryPoint:
    from gunicorn.config import Config

    parser = Config().parser()
    with contextlib.redirect_stderr(io.StringIO()) as errors:
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            raise AssertionError(f"gunicorn {args}: {errors.getvalue().strip()}") from None
    assert len(parsed.args) == 1, f"gunicorn needs exactly one WSGI app, got {parsed.args}"
    module, _, attribute = parsed.args[0].partition(":")
    application = getattr(importlib.import_module(module), attribute or "application", None)
    assert callable(application), f"{parsed.args[0]} is not a WSGI application"
    assert parsed.args[0] == settings.WSGI_APPLICATION.replace(".application", ":application")
    binds = parsed.bind or ["127.0.0.1:8000"]
    return EntryPoint("web", port=int(binds[0].rsplit(":", 1)[1]), args=args)


def _manage(args: list[str]) -> EntryPoint:
    assert args, "python manage.py needs a command"
    name, rest = args[0], args[1:]
    commands = get_commands()
    assert name in commands, f"manage.py has no command {name!r}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    try:
        parser.parse_args(rest)
    except CommandError as exc:
        raise AssertionError(f"manage.py {name} {rest}: {exc}") from None
    role = {"run_mover": "mover", "run_flower_gate": "flower-gate"}.get(name, name)
    return EntryPoint(role, args=rest)


def healthcheck_roles() -> set[str]:
    """Roles deploy/docker/healthcheck.py knows how to ask."""
    spec = importlib.util.spec_from_file_location("jobqueue_healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    roles = set()
    for role in ("web", "worker", "mover", "flower", "flower-gate", "migrate", "nonsense"):
        try:
            module.url_for(role, [])
        except ValueError:
            continue
        roles.add(role)
    return roles


def check_healthcheck_command(argv: list[str], role: str) -> None:
    """argv runs the image's health check script, in the image, for this role."""
    assert argv[:2] == ["python", str(IMAGE_ROOT / HEALTHCHECK_SCRIPT.relative_to(ROOT))], argv
    assert HEALTHCHECK_SCRIPT.exists()
    assert argv[2:] == [role], f"health check asks for {argv[2:]}, the container runs {role}"
    assert role in healthcheck_roles(), f"the health check script cannot check {role}"


def interpolate(value: str) -> str:
    """A compose value with ${VAR:-default} as its default, ${VAR:?error} as 'required'."""

    def replace(match: re.Match) -> str:
        operator, rest = match.group(2) or "", match.group(3) or ""
        if operator in {":-", "-"}:
            return rest
        if operator in {":?", "?"}:
            return "required"
        return ""

    return re.sub(r"\$\{(\w+)(:?[-?])?([^}]*)\}", replace, str(value))


def duration_seconds(text: str) -> float:
    """Compose durations: 45s, 1m30s, 2m."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(n) * units[u] for n, u in parts)
