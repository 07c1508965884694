"""Built-in job types: email, email_welcome, report, noop."""

import csv
import smtplib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import timezone
from rest_framework import serializers

from jobs import selectors
from jobs.exceptions import PermanentError

from .context import JobContext
from .registry import job_type


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


class EmailPayload(serializers.Serializer):
    to = Recipients()
    subject = serializers.CharField(max_length=998)
    body = serializers.CharField(allow_blank=True, max_length=1_000_000)
    from_email = serializers.EmailField(required=False)


def _send(*, to: list[str], subject: str, body: str, from_email: str | None = None) -> dict:
    message = EmailMessage(subject=subject, body=body, from_email=from_email or None, to=to)
    try:
        sent = message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(f"every recipient was refused: {sorted(exc.recipients)}") from exc
    return {"sent": sent, "to": to}


@job_type("email", max_retries=3, timeout=30, validator=EmailPayload)
def email(payload: dict, ctx: JobContext) -> dict:
    to = payload["to"] if isinstance(payload["to"], list) else [payload["to"]]
    return _send(to=to, subject=payload["subject"], body=payload["body"], from_email=payload.get("from_email"))


class WelcomePayload(serializers.Serializer):
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
        return attrs


@job_type("report", max_retries=2, timeout=300, validator=ReportPayload)
def report(payload: dict, ctx: JobContext) -> dict:
    fields = ReportPayload(data=payload)
    fields.is_valid(raise_exception=True)
    until = fields.validated_data.get("until") or timezone.now()
    since = fields.validated_data.get("since") or until - timedelta(hours=fields.validated_data.get("hours", 24))
    ctx.progress(10, "counting jobs")
    rows = selectors.counts_by_type_and_status(since=since, until=until)
    directory = settings.MEDIA_ROOT / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"jobs-{ctx.job_id}.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["type", "status", "count"])
        writer.writerows((row["type"], row["status"], row["count"]) for row in rows)
    ctx.progress(100, "written")
    return {"path": str(path), "rows": len(rows), "since": since.isoformat(), "until": until.isoformat()}


@job_type("noop", max_retries=0, timeout=10)
def noop(payload: dict, ctx: JobContext) -> None:
    return None
