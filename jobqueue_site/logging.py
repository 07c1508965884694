"""Log formatters: `LOG_FORMAT=plain` (text, job fields as key=value) or `json` (one object a line).

Job events carry their fields as `extra=`; see `jobs.services.events`."""

import json
import logging
from datetime import UTC, datetime

# Fields of job event lines, in this order.
JOB_FIELDS = ("job_id", "type", "queue", "attempt", "outcome", "duration", "worker", "error")


def _job_fields(record: logging.LogRecord) -> dict:
    return {name: getattr(record, name) for name in JOB_FIELDS if getattr(record, name, None) is not None}


class Redacting(logging.Formatter):
    """Configured secrets (SMTP, database and Redis passwords, SECRET_KEY) never reach a log line."""

    def format(self, record: logging.LogRecord) -> str:
        from jobs.rules.input_limits import redact

        return redact(super().format(record))


class _Plain(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{name}={value}" for name, value in _job_fields(record).items())
        if not fields:
            return text
        first, newline, rest = text.partition("\n")  # keep a traceback below the fields
        return f"{first} {fields}{newline}{rest}"


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_job_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(Redacting, _Plain):
    """Text, job fields as key=value."""


class JsonFormatter(Redacting, _Json):
    """One JSON object a line."""
