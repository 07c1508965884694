"""Input limits shared by the API and the services, and redaction of secrets from text we keep."""

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


ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def artifact_problem(name: str, size: int) -> str | None:
    """The problem, if a job's file may not be kept under `name` with `size` bytes."""
    if not ARTIFACT_NAME.fullmatch(name):
        return f"artifact name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
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
