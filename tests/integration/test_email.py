"""Email handlers against a real SMTP server: each worker thread keeps its connection open, and
the server's replies decide between a retry (4xx, no connection) and a dead job (5xx)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from jobs import services
from jobs.models import Job
from jobs.rules.exceptions import PermanentError
from tasks import handlers
from tasks.context import JobContext
from tests import servers
from tests.smtp import SmtpServer

CTX = JobContext(job_id="00000000-0000-4000-8000-000000000000", attempt=1, serial=1)


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    smtp_backend = "django.core.mail.backends.smtp.EmailBackend"
    with override_settings(EMAIL_BACKEND=smtp_backend, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
        handlers._close_connection()
        yield server
        handlers._close_connection()
    server.stop()


def send(to: str | list[str]) -> dict:
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


def test_a_greylisting_reply_to_rcpt_is_temporary(smtp):
    server = smtp
    server.replies["RCPT"] = ["451 4.7.1 greylisted, try again later"]

    with pytest.raises(handlers.SMTPTemporaryFailure) as failure:
        send("grey@example.com")

    assert not isinstance(failure.value, PermanentError)
    assert str(failure.value) == "SMTP 451 4.7.1 greylisted, try again later (recipient grey@example.com)"
    assert server.messages == []


def test_an_unknown_mailbox_is_permanent_and_named(smtp):
    server = smtp
    server.replies["RCPT"] = ["550 5.1.1 <nobody@example.com>: mailbox unavailable"]

    with pytest.raises(PermanentError) as failure:
        send("nobody@example.com")

    assert str(failure.value) == (
        "SMTP 550 5.1.1 <nobody@example.com>: mailbox unavailable (recipient nobody@example.com)"
    )


def test_recipients_refused_partly_for_now_and_partly_for_good_are_retried(smtp):
    server = smtp
    server.replies["RCPT"] = ["550 5.1.1 no such user", "452 4.2.2 mailbox full"]

    with pytest.raises(handlers.SMTPTemporaryFailure) as failure:
        send(["gone@example.com", "full@example.com"])

    assert str(failure.value) == (
        "SMTP 452 4.2.2 mailbox full (recipient full@example.com); "
        "SMTP 550 5.1.1 no such user (recipient gone@example.com)"
    )


def test_every_recipient_refused_for_good_is_permanent(smtp):
    server = smtp
    server.replies["RCPT"] = ["550 5.1.1 no such user", "550 5.1.1 no such user"]

    with pytest.raises(PermanentError) as failure:
        send(["b@example.com", "a@example.com"])

    assert str(failure.value) == "SMTP 550 5.1.1 no such user (recipients a@example.com, b@example.com)"


def test_a_multi_line_reply_is_read_as_one_line_of_text(smtp):
    server = smtp
    server.replies["RCPT"] = ["450-4.2.0 greylisted\r\n450 4.2.0 come back in 5 minutes"]

    with pytest.raises(handlers.SMTPTemporaryFailure) as failure:
        send("grey@example.com")

    assert str(failure.value) == "SMTP 450 4.2.0 greylisted 4.2.0 come back in 5 minutes (recipient grey@example.com)"


def test_a_message_refused_for_good_after_data_is_permanent(smtp):
    server = smtp
    server.replies["DATA"] = ["554 5.6.0 message content rejected"]

    with pytest.raises(PermanentError) as failure:
        send("someone@example.com")

    assert str(failure.value) == "SMTP 554 5.6.0 message content rejected (reply to DATA)"
    assert server.messages == []


def test_a_sender_refused_for_now_is_temporary(smtp):
    server = smtp
    server.replies["MAIL"] = ["451 4.3.0 mail server temporarily unavailable"]

    with pytest.raises(handlers.SMTPTemporaryFailure) as failure:
        send("someone@example.com")

    assert str(failure.value) == "SMTP 451 4.3.0 mail server temporarily unavailable (reply to MAIL FROM)"


def test_nothing_listening_is_temporary():
    port = servers.free_port()  # bound and released: nothing listens on it
    smtp_backend = "django.core.mail.backends.smtp.EmailBackend"
    handlers._close_connection()
    nowhere = override_settings(EMAIL_BACKEND=smtp_backend, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port)
    with nowhere, pytest.raises(handlers.SMTPTemporaryFailure) as failure:
        send("someone@example.com")

    assert str(failure.value).startswith(f"SMTP connection to 127.0.0.1:{port} failed: ConnectionRefusedError")
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize(
    "command, reply",
    [("MAIL", "451 4.3.0 try later"), ("RCPT", "550 5.1.1 no such user"), ("DATA", "452 4.3.1 out of memory")],
)
def test_after_a_failed_email_the_next_one_goes_over_a_new_connection(smtp, command, reply):
    server = smtp
    send("first@example.com")
    server.replies[command] = [reply]
    with pytest.raises((PermanentError, handlers.SMTPTemporaryFailure)):
        send("refused@example.com")

    assert send("next@example.com") == {"sent": 1, "to": ["next@example.com"]}
    assert server.messages == [["first@example.com"], ["next@example.com"]]
    assert server.connections == 2


MAIL = {"to": "someone@example.com", "subject": "hi", "body": "hello"}


def test_a_client_cannot_choose_the_sender_of_the_platforms_mail(client_for):
    client = client_for("shop")
    spoofed = {**MAIL, "from_email": "ceo@bank.example"}

    one = client.post("/submit-job", {"type": "email", "payload": spoofed}, format="json")
    many = client.post("/submit-jobs", {"jobs": [{"type": "email", "payload": spoofed}]}, format="json")
    headers = {"headers": {"Sender": "ceo@bank.example"}, "reply_to": "ceo@bank.example"}
    plain = client.post("/submit-job", {"type": "email", "payload": {**MAIL, **headers}}, format="json")

    assert one.status_code == 400 and "from_email" in one.json()["payload"], one.content
    assert many.status_code == 400 and "from_email" in str(many.json()["jobs"]), many.content
    assert plain.status_code == 201 and plain.json()["payload"] == MAIL  # no header of the client's reaches the mail
    job, _ = services.job_submit(type="email", payload=spoofed)  # code, not a client, may
    assert Job.objects.count() == 2 and job.payload["from_email"] == "ceo@bank.example"


def test_a_sender_the_allow_list_gives_a_user_is_that_users_alone(client_for):
    shop, other = client_for("shop"), client_for("other")
    own = {**MAIL, "from_email": "Orders@Shop.example"}

    with override_settings(JOB_EMAIL_SENDERS={"shop": frozenset({"orders@shop.example"})}):
        allowed = shop.post("/submit-job", {"type": "email", "payload": own}, format="json")
        refused = other.post("/submit-job", {"type": "email", "payload": own}, format="json")

    assert allowed.status_code == 201 and allowed.json()["payload"]["from_email"] == "Orders@Shop.example"
    assert refused.status_code == 400 and "from_email" in refused.json()["payload"]


def test_a_users_mail_per_hour_is_limited_and_another_users_is_not(client_for):
    shop, other = client_for("shop"), client_for("other")
    welcome = {"type": "email_welcome", "payload": {"email": "new@example.com"}}

    with override_settings(JOB_EMAIL_HOURLY_PER_OWNER=2):
        sent = [shop.post("/submit-job", body, format="json") for body in (welcome, {"type": "email", "payload": MAIL})]
        over = shop.post("/submit-job", welcome, format="json")
        elsewhere = other.post("/submit-job", welcome, format="json")
        code, _ = services.job_submit(type="email", payload=MAIL)

    assert [answer.status_code for answer in sent] == [201, 201]
    assert over.status_code == 400 and "JOB_EMAIL_HOURLY_PER_OWNER" in str(over.json()["payload"]), over.content
    assert elsewhere.status_code == 201 and code.owner is None


def test_a_sender_is_checked_again_when_the_mail_is_sent(smtp):
    # Stored before the rule, or before an operator took the address from the user's allow-list.
    job, _ = services.job_submit(type="email", payload={**MAIL, "from_email": "ceo@bank.example"})
    owner = get_user_model().objects.create_user("shop")
    Job.objects.filter(pk=job.pk).update(owner=owner)
    ctx = JobContext(job_id=str(job.pk), attempt=1, serial=1)

    with pytest.raises(PermanentError, match="may not choose the sender"):
        handlers.email(job.payload, ctx)
    with override_settings(JOB_EMAIL_SENDERS={"shop": frozenset({"ceo@bank.example"})}):
        assert handlers.email(job.payload, ctx) == {"sent": 1, "to": ["someone@example.com"]}
    assert smtp.messages == [["someone@example.com"]]
