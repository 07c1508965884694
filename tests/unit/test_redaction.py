import logging

from django.conf import settings

from jobqueue_site.logging import JsonFormatter, PlainFormatter
from jobs.limits import REDACTED, redact


def record(message: str, *args) -> logging.LogRecord:
    return logging.LogRecord("jobqueue.test", logging.ERROR, __file__, 1, message, args, None)


def test_configured_secrets_and_url_passwords_are_redacted():
    text = f"key {settings.SECRET_KEY} and redis://user:hunter2-secret@127.0.0.1:6379/0"

    cleaned = redact(text)

    assert settings.SECRET_KEY not in cleaned and "hunter2-secret" not in cleaned
    assert cleaned.count(REDACTED) == 2 and "127.0.0.1:6379" in cleaned


def test_no_log_format_lets_a_secret_through():
    for formatter in (PlainFormatter(), JsonFormatter()):
        line = formatter.format(record("connect failed for %s", f"postgres://jobqueue:pw-{settings.SECRET_KEY}@db/x"))
        assert settings.SECRET_KEY not in line and REDACTED in line
