"""Built-in job types: email, email_welcome, report, noop."""

import contextlib
import csv
import io
import smtplib
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string
from django.utils import timezone
from rest_framework import serializers

from jobs.rules.exceptions import PermanentError
from jobs.rules.input_limits import mail_volume_problem, sender_problem
from jobs.rules.registry import job_type
from jobs.services import selectors

from .context import JobContext


class Recipients(serializers.Field):
    """One address or a list of up to 50."""

    def to_internal_value(self, data: Any) -> list[str]:
        items = [data] if isinstance(data, str) else data
        if not isinstance(items, list) or not items or len(items) > 50:
            raise serializers.ValidationError("give an email address or a list of 1 to 50 addresses")
        field = serializers.EmailField()
        return [field.run_validation(item) for item in items]

    def to_representation(self, value: list[str]) -> list[str]:
        return value


def _one_line(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise serializers.ValidationError("must be one line: a line break would inject a mail header")


# The types that send mail: one user's volume of them per hour is limited (jobs.rules.input_limits).
MAIL_TYPES = ("email", "email_welcome")


class MailPayload(serializers.Serializer):
    """A payload of a mail type, submitted by `context["owner"]` (None for code): the owner's mail
    volume is checked. The message's headers are the handler's; unknown fields are dropped."""

    def validate(self, attrs: dict) -> dict:
        owner = self.context.get("owner")
        if owner is not None and settings.JOB_EMAIL_HOURLY_PER_OWNER:
            since = timezone.now() - timedelta(hours=1)
            count = selectors.jobs_submitted_since(owner=owner, types=MAIL_TYPES, since=since)
            problem = mail_volume_problem(owner=owner, sent_last_hour=count)
            if problem:
                raise serializers.ValidationError(problem)
        return attrs


class EmailPayload(MailPayload):
    to = Recipients()
    subject = serializers.CharField(max_length=998, validators=[_one_line])
    body = serializers.CharField(allow_blank=True, max_length=1_000_000)
    from_email = serializers.EmailField(
        required=False, help_text="Only for code, or a user JOB_EMAIL_SENDERS gives the address."
    )

    def validate_from_email(self, value: str) -> str:
        problem = sender_problem(owner=self.context.get("owner"), address=value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


# Each worker thread keeps its SMTP connection open between email jobs: opening one (connect,
# greeting, EHLO, STARTTLS, login) costs more than sending a message. One idle for longer than
# this is closed and opened again rather than trusted: servers drop idle clients.
SMTP_IDLE_SECONDS = 10.0
_smtp = threading.local()


def _connection(*, fresh: bool = False) -> BaseEmailBackend:
    """This thread's open email connection (a new one if `fresh` or idle too long)."""
    backend, used = getattr(_smtp, "backend", None), getattr(_smtp, "used", 0.0)
    if backend is not None and (fresh or time.monotonic() - used > SMTP_IDLE_SECONDS):
        _close_connection()
        backend = None
    if backend is None:
        backend = mail.mailers.default if hasattr(mail, "mailers") else mail.get_connection()  # Django 6.1: mailers
        backend.open()  # open now, so that sending leaves it open
        _smtp.backend = backend
    _smtp.used = time.monotonic()
    return backend


def _close_connection() -> None:
    backend, _smtp.backend = getattr(_smtp, "backend", None), None
    if backend is not None:
        with contextlib.suppress(Exception):  # it is being dropped because it may be broken
            backend.close()


class SMTPTemporaryFailure(Exception):
    """The mail server answered 4xx or could not be reached: the job is retried."""


def _send(*, to: list[str], subject: str, body: str, from_email: str | None = None) -> dict:
    message = EmailMessage(subject=subject, body=body, from_email=from_email or None, to=to)
    try:
        try:
            sent = _deliver(message)
        except (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError):
            # The kept connection was closed by the server: nothing was accepted on it.
            sent = _deliver(message, fresh=True)
    except Exception as exc:
        _close_connection()  # in an unknown state: the next job opens a new one
        failure = _smtp_failure(exc)
        if failure is None:
            raise
        raise failure from exc
    return {"sent": sent, "to": to}


# The stage of the conversation each smtplib reply exception comes from, for the message.
_SMTP_STAGES: dict[type, str] = {
    smtplib.SMTPConnectError: "greeting",
    smtplib.SMTPHeloError: "reply to HELO",
    smtplib.SMTPAuthenticationError: "reply to AUTH",
    smtplib.SMTPSenderRefused: "reply to MAIL FROM",
    smtplib.SMTPDataError: "reply to DATA",
}


def _smtp_failure(exc: Exception) -> Exception | None:
    """A PermanentError (5xx) or SMTPTemporaryFailure (4xx, no connection) for `exc`; None if neither."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_failure(exc.recipients)
    if isinstance(exc, smtplib.SMTPResponseException):
        stage = _SMTP_STAGES.get(type(exc))
        reply = _reply(exc.smtp_code, exc.smtp_error)
        return _failure(exc.smtp_code, f"{reply} ({stage})" if stage else reply)
    # SMTPException is an OSError: only a disconnect among them is a connection failure.
    if isinstance(exc, smtplib.SMTPServerDisconnected) or (
        isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
    ):
        return _unreachable(exc)
    return None  # not about the server's availability (an extension it lacks, no AUTH method) or not SMTP


def _recipients_failure(refused: dict[str, tuple[int, bytes | str]]) -> Exception:
    """One failure naming every refused recipient; permanent only if every refusal was a 5xx."""
    by_reply: dict[tuple[int, str], list[str]] = {}
    for address, (code, text) in refused.items():
        by_reply.setdefault((code, _text(text)), []).append(address)
    parts = [
        f"{_reply(code, text)} (recipient{'s' if len(addresses) > 1 else ''} {', '.join(sorted(addresses))})"
        for (code, text), addresses in sorted(by_reply.items())
    ]
    failure = PermanentError if all(_permanent(code) for code, _ in by_reply) else SMTPTemporaryFailure
    return failure("; ".join(parts))


def _unreachable(exc: OSError) -> SMTPTemporaryFailure:
    where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return SMTPTemporaryFailure(f"SMTP connection to {where} failed: {type(exc).__name__}: {exc}")


def _failure(code: int, message: str) -> Exception:
    return PermanentError(message) if _permanent(code) else SMTPTemporaryFailure(message)


def _permanent(code: int) -> bool:
    return 500 <= code <= 599


def _reply(code: int, text: bytes | str) -> str:
    # smtplib gives -1 for a reply line it could not read a code from.
    return f"SMTP {code} {_text(text)}" if code > 0 else f"SMTP reply without a code: {_text(text)}"


def _text(text: bytes | str) -> str:
    """A server's reply as text (smtplib keeps bytes); multi-line replies joined with spaces."""
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(decoded.split())


def _deliver(message: EmailMessage, *, fresh: bool = False) -> int:
    return _connection(fresh=fresh).send_messages([message])


def _sender(payload: dict, ctx: JobContext) -> str | None:
    """The payload's `from_email`, checked again at sending: the job may have been stored before
    the rule, or before an operator took the address from its owner's allow-list."""
    address = payload.get("from_email")
    if not address:
        return None
    problem = sender_problem(owner=selectors.job_owner_user(job_id=ctx.job_id), address=address)
    if problem:
        raise PermanentError(problem)
    return address


@job_type("email", max_retries=3, timeout=30, validator=EmailPayload)
def email(payload: dict, ctx: JobContext) -> dict:
    to = payload["to"] if isinstance(payload["to"], list) else [payload["to"]]
    return _send(to=to, subject=payload["subject"], body=payload["body"], from_email=_sender(payload, ctx))


class WelcomePayload(MailPayload):
    email = serializers.EmailField()
    name = serializers.CharField(required=False, max_length=200)


@job_type("email_welcome", max_retries=3, timeout=30, validator=WelcomePayload)
def email_welcome(payload: dict, ctx: JobContext) -> dict:
    context = {"email": payload["email"], "name": payload.get("name") or payload["email"].split("@")[0]}
    body = render_to_string("tasks/welcome.txt", context)
    return _send(to=[payload["email"]], subject="Welcome aboard", body=body)


class ReportPayload(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    hours = serializers.IntegerField(required=False, min_value=1, max_value=24 * 366)

    def validate(self, attrs: dict) -> dict:
        if "hours" in attrs and "since" in attrs:
            raise serializers.ValidationError("give either hours or since, not both")
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"since": ["must be before until"]})
        return attrs


@job_type("report", max_retries=2, timeout=300, validator=ReportPayload)
def report(payload: dict, ctx: JobContext) -> dict:
    fields = ReportPayload(data=payload)
    fields.is_valid(raise_exception=True)
    until = fields.validated_data.get("until") or timezone.now()
    since = fields.validated_data.get("since") or until - timedelta(hours=fields.validated_data.get("hours", 24))
    ctx.progress(10, "counting jobs")
    # A report counts its owner's jobs; everyone's only for staff who may view every job.
    owner_id, sees_all = selectors.job_owner(job_id=ctx.job_id)
    owner = selectors.ALL_OWNERS if sees_all else owner_id
    rows = selectors.counts_by_type_and_status(since=since, until=until, owner_id=owner)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["type", "status", "count"])
    writer.writerows((row["type"], row["status"], row["count"]) for row in rows)
    url = ctx.save_artifact("report.csv", out.getvalue(), "text/csv; charset=utf-8")
    ctx.progress(100, "written")
    # The CSV is downloaded by the job's owner from `download` (GET, with the same token).
    return {"download": url, "rows": len(rows), "since": since.isoformat(), "until": until.isoformat()}


@job_type("noop", max_retries=0, timeout=10)
def noop(payload: dict, ctx: JobContext) -> None:
    return None
