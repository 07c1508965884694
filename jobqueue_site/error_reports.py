"""Django's error reports (the DEBUG=1 technical 500 page, error emails to ADMINS) without secrets.

Django hides settings named like a secret (`*_KEY`, `*PASSWORD*`, `*TOKEN*`), but not a password
inside a URL: REDIS_URL, CELERY_BROKER_URL and the cache's LOCATION went out whole. Every setting,
request header (`META`) and frame variable goes through `jobs.rules.input_limits.redact` here, and the finished
report once more, for what the filter never sees (the exception's message, a source line). Settings:
DEFAULT_EXCEPTION_REPORTER_FILTER and DEFAULT_EXCEPTION_REPORTER."""

from typing import Any

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from jobs.rules.input_limits import redact


def redacted(value: Any) -> Any:
    """A string redacted; any other value as it is, or its repr redacted if that shows a secret."""
    if isinstance(value, str):
        return redact(value)
    try:
        shown = repr(value)
    except Exception:  # a repr that fails: Django's page copes with the value itself
        return value
    cleaned = redact(shown)
    return value if cleaned == shown else cleaned


class RedactingFilter(SafeExceptionReporterFilter):
    """Django's filter, every value it lets through (settings, META, frame variables) redacted."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)  # recurses into dicts, lists and tuples
        return redact(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, redacted(value)) for name, value in variables]


class RedactingReporter(ExceptionReporter):
    """Django's report (HTML and text), redacted once it is written."""

    def get_traceback_html(self) -> str:
        return redact(super().get_traceback_html())

    def get_traceback_text(self) -> str:
        return redact(super().get_traceback_text())
