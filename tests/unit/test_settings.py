"""Production settings: refuse to start unsafe, and `check --deploy` is clean under the documented env."""

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

PRODUCTION_ENV = ROOT / "deploy" / "production.env.example"


def documented_production_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in PRODUCTION_ENV.read_text().splitlines() if line and line[0] != "#")
    return dict(pairs)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_with_debug_off_the_app_refuses_to_start_without(missing):
    env = {k: v for k, v in documented_production_env().items() if k != missing}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_check_deploy_is_clean_under_the_documented_production_env():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=documented_production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


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
    for name, value in (("JOB_LEASE_SECONDS", "thirty"), ("JOB_CLI_REQUIRE_ACTOR", "maybe")):
        result = manage("check", env={"DEBUG": "1", "JOBQUEUE_VAR_DIR": str(tmp_path), name: value})
        assert result.returncode != 0 and f"{name}={value!r} is not" in result.stderr, result.stderr
