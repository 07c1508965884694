"""`make run`'s development stack: its superuser is made once, and it never runs without DEBUG."""

import os
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.management.commands import run_dev
from tests import servers


def test_the_dev_superuser_is_created_once_and_a_changed_password_is_kept(db):
    token, known = run_dev.ensure_dev_user("admin")
    user = get_user_model().objects.get(username="admin")
    assert known and user.is_superuser and user.check_password("admin")
    user.set_password("a-better-password-than-admin")
    user.save()

    again, known = run_dev.ensure_dev_user("admin")

    user.refresh_from_db()
    assert again == token and not known
    assert user.check_password("a-better-password-than-admin")


def test_the_banner_never_shows_the_redis_password_nor_a_changed_login(db, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_DEV_PASSWORD", "admin")
    config = run_dev.read_config()

    text = run_dev.banner(config, token="t0k3n", redis_url="redis://:s3cret-pw@127.0.0.1:6390/0", password_known=False)

    assert "s3cret-pw" not in text and "redis://:[redacted]@127.0.0.1:6390/0" in text
    [admin_line] = [line for line in text.splitlines() if line.strip().startswith("Admin")]
    assert admin_line.endswith("(login admin / <the password you set>)")


def test_run_dev_refuses_to_start_without_debug(db):
    # The tests run with DEBUG=0, as production does.
    with pytest.raises(CommandError, match="needs DEBUG=1"):
        call_command("run_dev")


def test_flowers_login_is_passed_in_its_environment_not_on_its_command_line(monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:flower-s3cret")
    config = run_dev.read_config()

    specs = {spec.name: spec for spec in run_dev.process_specs(config)}
    flower, gate = specs["flower"], specs["flower-gate"]

    assert not any("s3cret" in arg or config.flower_upstream_auth in arg for arg in flower.argv + gate.argv)
    # The gate on FLOWER_PORT checks the operator's login; Flower, on a private port, only the gate's.
    assert gate.env["JOBQUEUE_FLOWER_LOGIN"] == "ops:flower-s3cret"
    assert f"--port={config.flower_port}" in gate.argv and f"--port={config.flower_upstream_port}" in flower.argv
    # On loopback whatever a deployment's JOBQUEUE_FLOWER_GATE_ADDR/UPSTREAM_HOST in the environment say.
    assert {"--address=127.0.0.1", "--upstream-host=127.0.0.1"} <= set(gate.argv)
    assert flower.env["FLOWER_BASIC_AUTH"] == gate.env["JOBQUEUE_FLOWER_UPSTREAM_LOGIN"] == config.flower_upstream_auth
    assert len(config.flower_upstream_auth) > 30 and "s3cret" not in config.flower_upstream_auth


def test_flowers_dev_login_is_the_operators_choice_or_made_for_the_run_never_admin_admin(db, monkeypatch):
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("JOBQUEUE_DEV_PASSWORD", raising=False)
    run_dev.ensure_dev_user("admin")  # the admin's default login, which the operator may change later

    first, second = run_dev.read_config(), run_dev.read_config()

    assert first.flower_auth.startswith("admin:") and first.flower_auth != "admin:admin"
    assert len(first.flower_auth) >= len("admin:") + 16 and second.flower_auth != first.flower_auth
    text = run_dev.banner(first, token="t0k3n", redis_url="redis://127.0.0.1:6390/0")
    [flower_line] = [line for line in text.splitlines() if line.strip().startswith("Flower")]
    assert flower_line.endswith(f"(login admin / {first.flower_auth.split(':', 1)[1]})")  # shown this once

    monkeypatch.setenv("JOBQUEUE_DEV_PASSWORD", "chosen-by-the-operator")
    assert run_dev.read_config().flower_auth == "admin:chosen-by-the-operator"


def test_the_banner_prints_the_default_dev_logins_but_never_a_password_the_operator_set(db, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_DEV_PASSWORD", "dev-s3cret")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:flower-s3cret")

    text = run_dev.banner(run_dev.read_config(), token="t0k3n", redis_url="redis://127.0.0.1:6390/0")

    assert "s3cret" not in text
    assert "(login admin / <JOBQUEUE_DEV_PASSWORD>)" in text
    assert "(login ops / <the password in FLOWER_BASIC_AUTH>)" in text


def test_flower_starts_without_a_banner_or_warnings_while_no_worker_answers(broker, monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    flower = next(spec for spec in run_dev.process_specs(run_dev.read_config()) if spec.name == "flower")
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        process = subprocess.Popen(flower.argv, env={**os.environ, **flower.env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            # Flower asks the workers at its start and gives up after a second.
            servers.wait_for(lambda: "Connected to" in log.read_text(), timeout=30, what="Flower's broker connection")
            time.sleep(2.5)
        finally:
            process.terminate()
            process.wait(timeout=10)

    text = log.read_text()
    assert "Connected to" in text
    assert not [line for line in text.splitlines() if " WARNING " in line or "Registered tasks" in line], text
