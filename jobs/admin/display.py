"""HTML bits the admin shows: status badges, progress bars, ages, pretty JSON."""

import json
from datetime import datetime
from typing import Any

from django.utils import formats, timezone
from django.utils.html import format_html

from jobs import formatting

STATUS_COLOURS = {
    "scheduled": "#6f42c1",
    "queued": "#0d6efd",
    "running": "#fd7e14",
    "waiting": "#20c997",
    "succeeded": "#198754",
    "retrying": "#d39e00",
    "dead": "#dc3545",
    "cancelled": "#6c757d",
}
OUTCOME_COLOURS = {
    "running": "#fd7e14",
    "succeeded": "#198754",
    "failed": "#dc3545",
    "lost": "#dc3545",
    "interrupted": "#6c757d",
}


def badge(value: str, colours: dict[str, str] = STATUS_COLOURS) -> str:
    return format_html('<span class="jq-badge" style="background:{}">{}</span>', colours.get(value, "#6c757d"), value)


def progress_bar(percent: int, message: str = "") -> str:
    return format_html(
        '<span class="jq-progress" title="{}"><span style="width:{}%"></span></span> {}%',
        message or f"{percent}%",
        max(0, min(100, percent)),
        percent,
    )


def age(when: datetime | None) -> str:
    """How long ago, and when to the second."""
    if when is None:
        return "-"
    at = formats.date_format(timezone.localtime(when), "DATETIME_FORMAT")
    return format_html(
        '<span title="{}">{}</span> <span class="jq-quiet">{}</span>',
        when.isoformat(),
        formatting.age(when, timezone.now()),
        at,
    )


def due(when: datetime | None) -> str:
    """How long until, and when to the second (a time already passed reads as due)."""
    if when is None:
        return "-"
    seconds = (when - timezone.now()).total_seconds()
    at = formats.date_format(timezone.localtime(when), "DATETIME_FORMAT")
    soon = f"in {formatting.duration(seconds)}" if seconds >= 1 else "due"
    return format_html('<span title="{}">{}</span> <span class="jq-quiet">{}</span>', when.isoformat(), soon, at)


def pretty_json(value: Any) -> str:
    return "-" if value is None else pre(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def pre(text: str) -> str:
    return format_html('<pre class="jq-pre">{}</pre>', text) if text else "-"
