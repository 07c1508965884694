import logging
import sys

import django
import pytest
from django.conf import settings
from django.test import override_settings

from jobqueue_site.logging import JsonFormatter, PlainFormatter
from jobs.rules.input_limits import REDACTED, redact


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


PASSWORD = "hunter2-s3cret-pw"
URL = f"redis://:{PASSWORD}@127.0.0.1:6399/0"
LEAKY = {
    "DEBUG": True,
    "REDIS_URL": URL,
    "CELERY_BROKER_URL": URL,
    "CACHES": {"default": {**settings.CACHES["default"], "LOCATION": URL}},
    "JOB_EXTRA_URLS": [URL, (URL,)],
    "ADMINS": ["ops@example.com"] if django.VERSION >= (6,) else [("ops", "ops@example.com")],  # 6.0: addresses
}


def failing_request(**headers):
    """A request whose view failed on a Redis URL: in a local variable, the message and META."""
    from django.test import RequestFactory

    request = RequestFactory().get("/submit-job", HTTP_X_UPSTREAM=URL, **headers)
    broker_url = URL  # noqa: F841 (a frame variable the page shows)
    try:
        raise ConnectionError(f"Error connecting to {URL}")
    except ConnectionError:
        return request, sys.exc_info()


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_500_page_shows_no_password_of_a_setting_meta_a_variable_or_the_error(accept):
    from django.views.debug import technical_500_response

    with override_settings(**LEAKY):
        request, exc_info = failing_request(HTTP_ACCEPT=accept)
        page = technical_500_response(request, *exc_info).content.decode()

    assert page.count("127.0.0.1:6399") >= 5  # settings, META, the variable and the error are all shown
    assert PASSWORD not in page
    assert REDACTED in page


def test_the_reporter_filter_redacts_every_setting_and_header_before_any_page_is_written():
    from django.views.debug import get_exception_reporter_filter

    with override_settings(**LEAKY):
        request, _ = failing_request()
        safe = get_exception_reporter_filter(request)
        shown = safe.get_safe_settings()
        meta = safe.get_safe_request_meta(request)

    cleaned = f"redis://:{REDACTED}@127.0.0.1:6399/0"
    assert (shown["REDIS_URL"], shown["CACHES"]["default"]["LOCATION"]) == (cleaned, cleaned)
    assert shown["JOB_EXTRA_URLS"] == [cleaned, (cleaned,)] and meta["HTTP_X_UPSTREAM"] == cleaned
    assert PASSWORD not in repr(shown) + repr(meta)


def test_error_emails_and_log_reports_use_the_same_filter():
    from django.core import mail
    from django.utils.log import AdminEmailHandler

    with override_settings(**LEAKY, EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        request, exc_info = failing_request()
        report = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), exc_info)
        report.request = request
        AdminEmailHandler(include_html=True).emit(report)

    for formatter in (PlainFormatter(), JsonFormatter()):  # the log line of the same report, traceback and all
        line = formatter.format(report)
        assert "127.0.0.1:6399" in line and "Traceback" in line and PASSWORD not in line
    [email] = mail.outbox
    bodies = [email.body, *(content for content, _ in email.alternatives)]
    assert len(bodies) == 2 and all("127.0.0.1:6399" in body for body in bodies)
    assert not [body for body in bodies if PASSWORD in body]
