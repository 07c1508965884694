"""Production settings: refuse to start unsafe, and `check --deploy` is clean under the documented env."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.servers import ROOT

PRODUCTION_ENV = ROOT / "deploy" / "production.env.example"


def documented_production_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in PRODUCTION_ENV.read_text().splitlines() if line and line[0] != "#")
    return dict(pairs)


def production_env() -> dict[str, str]:
    """The documented production env with its placeholder replaced, as an operator must."""
    return {**documented_production_env(), "SECRET_KEY": secrets.token_urlsafe(50)}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_with_debug_off_the_app_refuses_to_start_without(missing):
    env = {k: v for k, v in production_env().items() if k != missing}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_check_deploy_is_clean_under_the_documented_production_env():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_refuses_the_documented_placeholder_key():
    result = manage("check", "--deploy", env=documented_production_env())

    assert result.returncode != 0
    assert "SECRET_KEY is a placeholder" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "key, problem",
    [
        ("changeme", "a placeholder"),
        ("CHANGE-ME-to-a-long-random-string-CHANGE-ME-to-a-long-random-string", "a placeholder"),
        ("replace-with-50-or-more-random-characters-e.g.-python-c-secrets.token_urlsafe-64", "a placeholder"),
        ("django-insecure-" + "k3y" * 20, "a placeholder"),
        ("x" * 60, "too weak"),
        ("Zq8-short-but-random-3kP", "too weak"),
    ],
)
def test_with_debug_off_the_app_refuses_a_placeholder_or_weak_secret_key(key, problem):
    result = manage("check", env={**production_env(), "SECRET_KEY": key})

    assert result.returncode != 0
    assert f"SECRET_KEY is {problem}" in result.stderr, result.stderr
    assert key not in result.stderr  # the message never repeats the key


def test_debug_mode_runs_with_generated_defaults(tmp_path):
    result = manage("check", env={"DEBUG": "1", "JOBQUEUE_VAR_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dev-secret-key").exists()


@pytest.mark.parametrize(
    "env, seconds",
    [
        ({}, "10.0"),
        ({"JOB_HEARTBEAT_SECONDS": "3"}, "3.0"),
        ({"JOB_HEARTBEAT_SECONDS": "3", "JOB_LEASE_RENEW_SECONDS": "4"}, "4.0"),
    ],
)
def test_the_lease_renewal_interval_also_reads_its_older_name(tmp_path, env, seconds):
    code = "from django.conf import settings; print(settings.JOB_LEASE_RENEW_SECONDS)"
    result = manage("shell", "-c", code, env={"DEBUG": "1", "JOBQUEUE_VAR_DIR": str(tmp_path), **env})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == seconds


def test_a_malformed_number_or_boolean_is_refused_by_name(tmp_path):
    for name, value in (
        ("JOB_LEASE_SECONDS", "thirty"),
        ("JOB_CLI_REQUIRE_ACTOR", "maybe"),
        ("JOB_EMAIL_SENDERS", "shop"),
    ):
        result = manage("check", env={"DEBUG": "1", "JOBQUEUE_VAR_DIR": str(tmp_path), name: value})
        assert result.returncode != 0 and f"{name}={value!r} is not" in result.stderr, result.stderr


def shell_env(var_dir) -> dict[str, str]:
    """A developer's shell: nothing of the tests' configuration, only where var/ is."""
    kept = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**kept, "JOBQUEUE_VAR_DIR": str(var_dir)}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    setup = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'jobqueue_site.settings'); django.setup()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", setup + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


PROBE = """from django.conf import settings
from jobs.rules import registry
print(settings.DEBUG, settings.REDIS_URL, 'demo.flaky' in registry.names())"""


def test_var_dev_env_left_by_make_run_configures_a_bare_shell_but_never_a_configured_deployment(tmp_path):
    (tmp_path / "dev.env").write_text("# comment\nDEBUG=1\nREDIS_URL=redis://127.0.0.1:6391/0\n")
    bare = shell_env(tmp_path)

    assert run_python(PROBE, bare).stdout.split() == ["True", "redis://127.0.0.1:6391/0", "True"]
    # What the environment sets wins over the file.
    ours = run_python(PROBE, {**bare, "REDIS_URL": "redis://127.0.0.1:7000/0"}).stdout.split()
    assert ours == ["True", "redis://127.0.0.1:7000/0", "True"]
    # A deployment (SECRET_KEY set) or JOBQUEUE_DEV_ENV=0 ignores it: no DEBUG, no demo types.
    deployed = {**bare, **production_env()}
    assert run_python(PROBE, deployed).stdout.split()[::2] == ["False", "False"]
    refused = run_python(PROBE, {**bare, "JOBQUEUE_DEV_ENV": "0"})
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr


def test_without_settings_manage_py_says_what_is_missing_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "jobs", "--help"], cwd=ROOT, env=shell_env(tmp_path), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SECRET_KEY is not set" in result.stderr and "make run" in result.stderr
