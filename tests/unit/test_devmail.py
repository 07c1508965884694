"""The development SMTP sink: greylisting once per message, bouncing, keeping what it accepts."""

import logging
import mailbox
import smtplib

import pytest

from jobs.devstack import mail_sink as devmail
from tests import servers


@pytest.fixture
def sink(tmp_path):
    from aiosmtpd.controller import Controller

    port = servers.free_port()
    controller = Controller(devmail.SinkHandler(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, tmp_path / "mail"
    controller.stop()


def send(port: int, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail(
            "jobs@localhost", [to], f"From: jobs@localhost\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n"
        )


def test_greylist_is_refused_once_per_message_bounce_always_and_the_rest_is_kept(sink):
    port, maildir = sink

    for attempt in range(2):  # each message is greylisted once, then accepted on its retry
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(port, "greylist@example.com", f"message {attempt}")
        assert refused.value.recipients["greylist@example.com"][0] == 451
        send(port, "greylist@example.com", f"message {attempt}")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as bounced:
        send(port, "bounce@example.com", "never")
    assert bounced.value.recipients["bounce@example.com"][0] == 550
    send(port, "you@example.com", "hi")

    mails = devmail.read_mail(maildir)
    assert sorted(mail.subject for mail in mails) == ["hi", "message 0", "message 1"]
    assert all(mail.body.strip() == "hello" for mail in mails)
    assert devmail.read_mail(maildir.parent / "nothing-yet") == []


def test_a_malformed_message_is_shown_as_far_as_it_reads_and_the_others_still_are(tmp_path):
    maildir = tmp_path / "mail"
    box = mailbox.Maildir(maildir, create=True)
    box.add(b"From: a@localhost\r\nSubject: fine\r\n\r\nhello\r\n")
    box.add(
        b"From: b@localhost\r\nSubject: odd charset\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"\r\nh\xe9llo\r\n"
    )

    mails = {mail.subject: mail for mail in devmail.read_mail(maildir)}

    assert set(mails) == {"fine", "odd charset"}
    assert mails["fine"].body.strip() == "hello"
    assert mails["odd charset"].body.strip() == "h\ufffdllo" and mails["odd charset"].sender == "b@localhost"


def test_the_sink_logs_one_line_per_message_and_nothing_per_session(sink, caplog):
    port, _ = sink
    caplog.set_level(logging.DEBUG)

    send(port, "you@example.com", "hi")
    send(port, "me@example.com", "hello")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(port, "bounce@example.com", "never")

    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name != "jobqueue.mail"]
    assert lines == []
    kept = [r.getMessage() for r in caplog.records if r.name == "jobqueue.mail"]
    assert [line.split(" (")[0] for line in kept] == [
        "kept mail from jobs@localhost to you@example.com",
        "kept mail from jobs@localhost to me@example.com",
        "refused mail from jobs@localhost: 550 5.1.1 <bounce@example.com>: no such mailbox",
    ]
