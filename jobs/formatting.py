"""Plain-text tables and durations, for the `jobs` command and the admin."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def plain(value: Any) -> str:
    """A value as a person reads it: None as '-', objects and lists as JSON, the rest as text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns as wide as their widest cell; None shows as '-'."""
    cells = [[str(header) for header in headers]]
    cells += [[plain(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """12s, 4m, 3h, 2d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def seconds(value: float | None) -> str:
    """A duration to a useful precision: 0.42 s, 12.3 s, 150 s."""
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def age(when: datetime | None, now: datetime) -> str:
    return "-" if when is None else duration((now - when).total_seconds())


def shorten(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
