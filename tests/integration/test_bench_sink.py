"""The I/O-bound benchmark's SMTP sink speaks enough SMTP for the email handler, and waits."""

import time

from django.test import override_settings

from bench.workloads import slow_sink
from tasks import handlers
from tasks.context import JobContext

SMTP = "django.core.mail.backends.smtp.EmailBackend"
CTX = JobContext(job_id="00000000-0000-4000-8000-000000000000", attempt=1, serial=1)


def test_the_sink_accepts_the_handlers_mail_after_its_delay_on_one_connection():
    sink, port = slow_sink(0.2)
    try:
        with override_settings(EMAIL_BACKEND=SMTP, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=5):
            for body in ("hello", "", ".leading dot\r\n.\r\nand a lone dot line"):
                started = time.monotonic()
                result = handlers.email({"to": ["a@example.com", "b@example.com"], "subject": "s", "body": body}, CTX)
                assert result == {"sent": 1, "to": ["a@example.com", "b@example.com"]}
                assert time.monotonic() - started >= 0.2
        assert handlers._smtp.backend is not None  # the one connection stayed open
    finally:
        handlers._close_connection()
        sink.stop()
