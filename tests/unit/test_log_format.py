import json
import logging

from jobqueue_site.logging import JsonFormatter, PlainFormatter


def record(message: str, **extra) -> logging.LogRecord:
    entry = logging.LogRecord("jobqueue.jobs", logging.INFO, __file__, 1, message, None, None)
    entry.__dict__.update(extra)
    return entry


EVENT = {"job_id": "j-1", "type": "email", "queue": "high", "attempt": 2, "outcome": "retrying", "duration": 0.25}


def test_json_lines_carry_the_job_fields():
    line = JsonFormatter().format(record("job attempt failed", **EVENT, error="SMTPError"))

    entry = json.loads(line)
    assert entry["message"] == "job attempt failed" and entry["level"] == "INFO"
    assert {name: entry[name] for name in EVENT} == EVENT
    assert entry["error"] == "SMTPError" and entry["time"].endswith("+00:00")


def test_plain_lines_append_the_job_fields_as_key_value_pairs():
    line = PlainFormatter().format(record("job succeeded", **EVENT))

    assert line.endswith(
        "INFO jobqueue.jobs job succeeded job_id=j-1 type=email queue=high attempt=2 outcome=retrying duration=0.25"
    )


def test_lines_without_job_fields_are_unchanged():
    assert PlainFormatter().format(record("mover started")).endswith("INFO jobqueue.jobs mover started")
    assert set(json.loads(JsonFormatter().format(record("mover started")))) == {"time", "level", "logger", "message"}
