"""Email jobs through real workers to a real SMTP server on loopback: a 4xx reply or a server
that is down is retried, a 5xx reply sends the job to the dead-letter queue at once."""

import time

import pytest
import requests
from django.utils import timezone

from jobs.models import JobAttempt
from tests.smtp import SmtpServer

from .conftest import wait_until_terminal


@pytest.fixture(scope="module")
def smtp_stack(module_starter, web):
    """One SMTP server, worker sending through it and mover (it runs retries when due) for the module."""
    server = SmtpServer()
    server.start()
    env = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(server.port),
    }
    module_starter.worker("smtp", concurrency=1, env=env)
    module_starter.mover()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_stack):
    """The module's SMTP server, listening, with no message and no scripted reply left from a test before."""
    if smtp_stack.controller is None:
        smtp_stack.start()
    smtp_stack.messages.clear()
    smtp_stack.deliveries.clear()
    for replies in smtp_stack.replies.values():
        replies.clear()
    return smtp_stack


@pytest.fixture
def client(web, make_user, smtp):
    _, token = make_user()
    return Client(web, token)


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.headers = url, {"Authorization": f"Token {token}"}

    def submit_email(self, to: str, **options) -> str:
        body = {"type": "email", "payload": {"to": to, "subject": "hi", "body": "hello"}, **options}
        response = requests.post(f"{self.url}/submit-job", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def status(self, job_id: str) -> dict:
        response = requests.get(f"{self.url}/job-status/{job_id}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def test_a_greylisted_email_is_sent_on_the_second_attempt(client, smtp):
    smtp.replies["RCPT"] = ["451 4.7.1 greylisted, try again later"]
    job_id = client.submit_email("grey@example.com")

    wait_until_terminal([job_id], timeout=60)

    status = client.status(job_id)
    assert (status["status"], status["attempts"]) == ("succeeded", 2)
    first, second = status["history"]
    assert (first["outcome"], second["outcome"]) == ("failed", "succeeded")
    assert first["error"] == {
        "type": "SMTPTemporaryFailure",
        "message": "SMTP 451 4.7.1 greylisted, try again later (recipient grey@example.com)",
    }
    assert smtp.messages == [["grey@example.com"]]


def test_an_unknown_mailbox_is_dead_after_one_attempt_and_the_reason_says_why(client, smtp):
    smtp.replies["RCPT"] = ["550 5.1.1 <nobody@example.com>: mailbox unavailable"]
    job_id = client.submit_email("nobody@example.com")

    wait_until_terminal([job_id], timeout=60)

    status = client.status(job_id)
    assert (status["status"], status["attempts"], len(status["history"])) == ("dead", 1, 1)
    refusal = "SMTP 550 5.1.1 <nobody@example.com>: mailbox unavailable (recipient nobody@example.com)"
    assert (status["error"]["type"], status["error"]["message"]) == ("PermanentError", refusal)
    assert status["reason"] == f"permanent error, not retried: {refusal}"
    assert smtp.messages == []


def test_an_email_submitted_while_the_server_is_down_is_delivered_once_it_is_back(client, smtp):
    smtp.stop()
    job_id = client.submit_email("later@example.com", max_retries=10)
    time.sleep(10)  # the server stays down while the job fails and backs off
    back_at = timezone.now()
    smtp.start()  # the same port

    wait_until_terminal([job_id], timeout=60)

    status = client.status(job_id)
    assert status["status"] == "succeeded"
    *failed, succeeded = JobAttempt.objects.filter(job_id=job_id).order_by("number")
    assert len(failed) >= 2 and all(attempt.outcome == "failed" for attempt in failed)
    assert all("ConnectionRefusedError" in attempt.error_message for attempt in failed)
    assert all(attempt.started_at < back_at for attempt in failed)
    assert succeeded.outcome == "succeeded"
    assert smtp.messages == [["later@example.com"]]
