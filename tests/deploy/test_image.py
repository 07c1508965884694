"""The Dockerfile, its .dockerignore and the image's health check script, checked without a
container engine: the instructions, the build's collectstatic step, and the script's answers."""

import fnmatch
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests import servers
from tests.deploy import project
from tests.deploy.project import ROOT, check_command


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def values(name: str) -> list[str]:
    return [arguments for instruction, arguments in instructions() if instruction == name]


def test_slim_python_base_matching_the_project_python():
    base = values("FROM")
    assert len(base) == 1 and re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base[0]), base


def test_runs_as_an_unprivileged_user_with_a_fixed_uid():
    user = values("USER")[-1]
    assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user), f"USER {user}: want a numeric non-root uid:gid"
    uid = user.split(":")[0]
    assert any(f"--uid {uid}" in run for run in values("RUN")), "USER must be the account the image creates"


def test_dependencies_are_installed_in_a_layer_before_the_code():
    steps = [f"{i} {a}" for i, a in instructions()]
    requirements = steps.index("COPY requirements.txt .")
    install = steps.index("RUN pip install -r requirements.txt")
    code = steps.index("COPY . .")
    assert requirements < install < code


def test_every_command_the_image_runs_is_a_real_entry_point():
    command = json.loads(values("CMD")[-1])
    assert check_command(command).role == "web"
    assert values("WORKDIR") == [str(project.IMAGE_ROOT)]
    healthcheck = values("HEALTHCHECK")[-1]
    assert healthcheck.startswith("--") and " CMD " in f" {healthcheck}"
    project.check_healthcheck_command(json.loads(healthcheck.split(" CMD ", 1)[1])[:2] + ["web"], "web")
    exposed = {int(port) for port in values("EXPOSE")[-1].split()}
    assert {8000, 5555, 9808, 9809} <= exposed


def _collectstatic_step() -> str:
    (step,) = [run for run in values("RUN") if "collectstatic" in run]
    return step.split("&&")[0].strip()


def test_the_secret_key_of_the_build_stays_in_its_step():
    assert not any("SECRET_KEY" in env for env in values("ENV") + values("ARG"))
    words = shlex.split(_collectstatic_step())
    settings_env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    assert set(settings_env) == {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"} and settings_env["DEBUG"] == "0"
    check_command(words[len(settings_env) :])


def test_the_build_step_collects_static_files_with_only_the_image_environment():
    words = shlex.split(_collectstatic_step())
    step_env = [word for word in words if re.match(r"^[A-Z_]+=", word)]
    image_env = dict(re.findall(r"(\w+)=(\S+)", values("ENV")[0]))
    with tempfile.TemporaryDirectory() as var_dir:
        env = {
            "PATH": os.environ["PATH"],
            **image_env,
            "JOBQUEUE_VAR_DIR": var_dir,
            **dict(word.split("=", 1) for word in step_env),
        }
        command = [sys.executable if w == "python" else w for w in words[len(step_env) :]]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert (Path(var_dir) / "static" / "admin" / "css" / "base.css").exists()


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves path out of the build context (a pattern also drops what a folder holds)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        pattern = raw.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], pattern[3:]) for prefix in prefixes)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            ignored = not raw.startswith("!")
    return ignored


def test_dockerignore_keeps_what_the_image_needs_and_drops_the_rest():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "manage.py",
        "requirements.txt",
        "jobqueue_site/settings.py",
        "jobs/api/health.py",
        "tasks/worker.py",
    ):
        assert not _ignored(needed, patterns), f"{needed} would be missing from the image"
    assert not _ignored(str(project.HEALTHCHECK_SCRIPT.relative_to(ROOT)), patterns)
    for dropped in (".git/HEAD", ".venv/bin/python", ".env", "tests/conftest.py", "var/jobqueue.sqlite3"):
        assert _ignored(dropped, patterns), f"{dropped} would be copied into the image"


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("jobqueue_healthcheck", project.HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/usr/local/bin/python", "/usr/local/bin/gunicorn", "jobqueue_site.wsgi:application"], "web"),
        (["/usr/local/bin/python", "/usr/local/bin/celery", "-A", "jobqueue_site", "worker", "-Q", "high"], "worker"),
        (["/sbin/docker-init", "--", "celery", "-A", "jobqueue_site", "flower", "--port=5555"], "flower"),
        (["python", "manage.py", "run_mover"], "mover"),
        (["python", "manage.py", "run_flower_gate"], "flower-gate"),
        (["python", "manage.py", "migrate", "--noinput"], None),
    ],
)
def test_the_health_check_tells_the_role_from_the_command(argv, role):
    assert _load_script().role_of(argv) == role


def test_the_health_check_finds_web_ports_in_the_command():
    script = _load_script()
    assert script.url_for("web", ["gunicorn", "app", "--bind=0.0.0.0:8123"]) == "http://127.0.0.1:8123/healthz"
    assert script.url_for("web", ["gunicorn", "app", "-b", "0.0.0.0:8124"]) == "http://127.0.0.1:8124/healthz"
    assert script.url_for("flower", ["celery", "flower", "--port=5600"]) == "http://127.0.0.1:5600/healthcheck"


def test_the_health_check_asks_flower_through_its_gate_on_the_gates_port(monkeypatch):
    script, gate = _load_script(), ["python", "manage.py", "run_flower_gate"]
    assert script.url_for("flower-gate", gate) == "http://127.0.0.1:5555/healthcheck"
    monkeypatch.setenv("JOBQUEUE_FLOWER_GATE_PORT", "5601")
    assert script.url_for("flower-gate", gate) == "http://127.0.0.1:5601/healthcheck"
    assert script.url_for("flower-gate", [*gate, "--port=5602"]) == "http://127.0.0.1:5602/healthcheck"


class _Answers(http.server.BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append((self.path, self.headers["Host"]))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", servers.free_port()), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Answers.status, _Answers.seen = 200, []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _run_script(role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(project.HEALTHCHECK_SCRIPT), role]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False)


def test_the_health_check_asks_the_worker_endpoint_and_reports_its_answer(endpoint):
    healthy = _run_script("worker", {"JOB_WORKER_METRICS_PORT": str(endpoint)})
    assert healthy.returncode == 0, healthy.stdout
    assert _Answers.seen == [("/healthz", "localhost")]
    _Answers.status = 503
    assert _run_script("worker", {"JOB_WORKER_METRICS_PORT": str(endpoint)}).returncode == 1
    _Answers.status = 200
    assert _run_script("mover", {"JOB_MOVER_METRICS_PORT": str(endpoint)}).returncode == 0
    assert _Answers.seen[-1] == ("/metrics", "localhost")


def test_the_health_check_fails_when_nothing_answers():
    done = _run_script("worker", {"JOB_WORKER_METRICS_PORT": str(servers.free_port())})
    assert done.returncode == 1 and "unhealthy" in done.stdout


def test_documented_manage_py_commands_exist_and_take_those_arguments():
    """Every `python manage.py ...` line in the README and the documentation parses."""
    checked = 0
    for document in (ROOT / "README.md", *sorted((ROOT / "docs").glob("[!_]*/*.md")), ROOT / "docs" / "operations.md"):
        # A line ending in a backslash goes on in the next, as in a shell.
        for line in document.read_text().replace("\\\n", " ").splitlines():
            if "python manage.py " not in line or line.lstrip().startswith(("|", "-", "`python manage.py` ")):
                continue
            command = line[line.index("python manage.py ") :].split("#")[0].strip().rstrip("`")
            # [--option value] marks an optional part: check it as given.
            words = shlex.split(command.split("`")[0].replace("[", "").replace("]", ""))
            if "--help" in words:  # only the command must exist
                from django.core.management import get_commands

                assert words[2] in get_commands(), line
                continue
            check_command(words)
            checked += 1
    assert checked >= 10
