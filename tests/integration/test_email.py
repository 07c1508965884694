"""Email handlers against a real SMTP server: each worker thread keeps its connection open."""

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from tasks import handlers
from tasks.context import JobContext
from tests import services

CTX = JobContext(job_id="00000000-0000-4000-8000-000000000000", attempt=1, serial=1)


class Server:
    """Counts connections (one EHLO each) and keeps the messages."""

    def __init__(self) -> None:
        self.connections, self.messages = 0, []
        self.port = services.free_port()
        self.controller = None

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def restart(self) -> None:
        """Stop (closing every client connection) and listen again on the same port."""
        self.controller.stop()
        self.start()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp():
    server = Server()
    server.start()
    smtp_backend = "django.core.mail.backends.smtp.EmailBackend"
    with override_settings(EMAIL_BACKEND=smtp_backend, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
        handlers._close_connection()
        yield server
        handlers._close_connection()
    server.controller.stop()


def send(to: str) -> dict:
    return handlers.email({"to": to, "subject": "hi", "body": "hello"}, CTX)


def test_one_connection_carries_the_emails_of_a_thread(smtp):
    server = smtp

    results = [send(f"user{n}@example.com") for n in range(3)]

    assert results == [{"sent": 1, "to": [f"user{n}@example.com"]} for n in range(3)]
    assert server.messages == [[f"user{n}@example.com"] for n in range(3)]
    assert server.connections == 1


def test_a_connection_the_server_dropped_is_replaced_and_the_email_still_sent(smtp):
    server = smtp
    send("first@example.com")
    server.restart()  # closes the kept connection from the server's side

    assert send("second@example.com") == {"sent": 1, "to": ["second@example.com"]}
    assert server.messages == [["first@example.com"], ["second@example.com"]]
    assert server.connections == 2


def test_a_connection_idle_too_long_is_opened_again(smtp, monkeypatch):
    server = smtp
    send("first@example.com")
    monkeypatch.setattr(handlers, "SMTP_IDLE_SECONDS", 0.0)

    send("second@example.com")

    assert server.connections == 2 and len(server.messages) == 2
