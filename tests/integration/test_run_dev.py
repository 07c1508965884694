"""`make run`'s development stack: its superuser is made once, and it never runs without DEBUG."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.management.commands import run_dev


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

    [flower] = [spec for spec in run_dev.process_specs(config) if spec.name == "flower"]

    assert not any("flower-s3cret" in arg for arg in flower.argv)
    assert flower.env["FLOWER_BASIC_AUTH"] == "ops:flower-s3cret"


def test_the_banner_prints_the_default_dev_logins_but_never_a_password_the_operator_set(db, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_DEV_PASSWORD", "dev-s3cret")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:flower-s3cret")

    text = run_dev.banner(run_dev.read_config(), token="t0k3n", redis_url="redis://127.0.0.1:6390/0")

    assert "s3cret" not in text
    assert "(login admin / <JOBQUEUE_DEV_PASSWORD>)" in text
    assert "(login ops / <the password in FLOWER_BASIC_AUTH>)" in text
