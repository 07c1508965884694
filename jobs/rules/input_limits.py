"""Input limits shared by the API and the services, and redaction of secrets from text we keep."""

import json
import math
import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

REDACTED = "[redacted]"
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)", re.IGNORECASE)


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def too_deep(value: Any) -> str | None:
    """The problem, if `value` nests deeper than JOB_MAX_JSON_DEPTH."""
    depth, limit = json_depth(value), settings.JOB_MAX_JSON_DEPTH
    return f"JSON nests {depth} levels deep; the limit is {limit}" if depth > limit else None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which the database cannot store"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains text that is not valid Unicode (a lone surrogate)"
    return None


def unstorable(value: Any) -> str | None:
    """The problem, if `value` (parsed JSON) cannot be stored as it is: nested deeper than
    JOB_MAX_JSON_DEPTH, a number that is not finite (NaN, Infinity, 1e999), or text with a NUL or a
    lone surrogate. One walk, which stops at the first problem (a cycle too: it is too deep)."""
    limit = settings.JOB_MAX_JSON_DEPTH
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        problem = None
        if depth > limit:
            return f"JSON nests more than {limit} levels deep (JOB_MAX_JSON_DEPTH)"
        if isinstance(item, float) and not math.isfinite(item):
            return f"holds {item}: JSON numbers must be finite"
        if isinstance(item, str):
            problem = _text_problem(item)
        elif isinstance(item, dict):
            problem = next(filter(None, (_text_problem(key) for key in item if isinstance(key, str))), None)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        if problem:
            return problem
    return None


def payload_problem(payload: Any) -> str | None:
    """The problem, if `payload` may not be a job's payload: the one check of every entry point
    (API, admin, CLI, schedules, Python), before the job type's own validator."""
    if not isinstance(payload, dict):
        return "must be a JSON object"
    problem = unstorable(payload)
    if problem:
        return problem
    try:
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:  # from code: a value JSON has no form for
        return f"is not JSON: {exc}"
    limit = settings.JOB_MAX_PAYLOAD_BYTES
    return f"is {size} bytes; the limit is {limit} bytes" if size > limit else None


class NotJSON(ValueError):
    """Text that is not JSON a job can keep; the message says why."""


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON number")


def parse_json(text: str) -> Any:
    """JSON text typed by an operator (admin form, CLI option) as a value that can be stored;
    raises NotJSON naming the problem. What the API parses meets the same `unstorable` in the
    payload check."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotJSON("it nests too deeply") from None
    except NotJSON:
        raise
    except ValueError as exc:
        raise NotJSON(str(exc)) from None
    problem = unstorable(value)
    if problem:
        raise NotJSON(problem)
    return value


def sender_problem(*, owner: Any, address: str) -> str | None:
    """The problem, if a job of `owner` (a user; None for code) may not send mail as `address`:
    a client's mail comes from DEFAULT_FROM_EMAIL unless JOB_EMAIL_SENDERS gives its user the address."""
    if owner is None:
        return None
    name = owner.get_username()
    if address.lower() in settings.JOB_EMAIL_SENDERS.get(name, frozenset()):
        return None
    return (
        f"user {name!r} may not choose the sender: leave from_email out (mail is sent from DEFAULT_FROM_EMAIL), "
        "or have an operator allow the address for this user in JOB_EMAIL_SENDERS"
    )


def mail_volume_problem(*, owner: Any, sent_last_hour: int) -> str | None:
    """The problem, if `owner` (None for code, never limited) has submitted as many mail jobs in
    the last hour as JOB_EMAIL_HOURLY_PER_OWNER allows."""
    limit = settings.JOB_EMAIL_HOURLY_PER_OWNER
    if owner is None or not limit or sent_last_hour < limit:
        return None
    return (
        f"user {owner.get_username()!r} submitted {sent_last_hour} mail jobs in the last hour; "
        f"JOB_EMAIL_HOURLY_PER_OWNER allows {limit}: try again later"
    )


# A name that is one segment of a URL path: artifacts, schedules.
SLUG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SLUG_RULE = "use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"


def name_problem(name: Any, what: str) -> str | None:
    """The problem, if `name` may not name a `what` (an artifact, a schedule) in a URL."""
    if not isinstance(name, str) or not SLUG_NAME.fullmatch(name):
        return f"{what} name {name!r}: {SLUG_RULE}"
    return None


def artifact_problem(name: str, size: int) -> str | None:
    """The problem, if a job's file may not be kept under `name` with `size` bytes."""
    problem = name_problem(name, "artifact")
    if problem:
        return problem
    if size > settings.JOB_MAX_ARTIFACT_BYTES:
        return f"artifact {name!r} is {size} bytes; JOB_MAX_ARTIFACT_BYTES is {settings.JOB_MAX_ARTIFACT_BYTES}"
    return None


@cache
def _secrets() -> tuple[str, ...]:
    values = [settings.SECRET_KEY, settings.EMAIL_HOST_PASSWORD]
    for url in (settings.REDIS_URL, settings.CELERY_BROKER_URL):
        values.append(urlsplit(url).password or "")
    values.append(settings.DATABASES["default"].get("PASSWORD") or "")
    return tuple(sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with configured secrets and URL passwords replaced, for errors and logs we keep."""
    for secret in _secrets():
        text = text.replace(secret, REDACTED)
    if "://" not in text:  # no URL, no URL password: most lines, without the pattern's scan
        return text
    return URL_PASSWORD.sub(lambda m: m.group("scheme") + REDACTED, text)
