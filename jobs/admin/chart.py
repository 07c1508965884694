"""The overview's charts as SVG geometry, drawn by the template without any JavaScript."""

import math
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# One colour per queue in the queue charts.
QUEUE_COLOURS = {"high": "#dc3545", "medium": "#417690", "low": "#6c757d"}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1), so the axis reads well."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _frame(top: float) -> dict:
    """What every chart shares: its size, the plot's edges and the y ticks up to `top`."""
    fractions = (0, 1) if top == 1 else (0, 0.5, 1)
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": TOP + PLOT_HEIGHT,
        "label_y": HEIGHT - 8,
        "ticks": [{"y": round(TOP + PLOT_HEIGHT * (1 - f), 2), "value": f"{top * f:g}"} for f in fractions],
    }


def throughput_chart(minutes: list[dict]) -> dict:
    """Stacked bars per minute (succeeded, and failed on top of them), the y ticks and the time labels."""
    top = nice_ceiling(max((m["succeeded"] + m["failed"] for m in minutes), default=0))
    slot = PLOT_WIDTH / max(len(minutes), 1)
    bar_width = round(slot * 0.8, 2)
    succeeded, failed, labels = [], [], []
    for i, minute in enumerate(minutes):
        x = LEFT + i * slot + slot * 0.1
        when = minute["minute"].strftime("%H:%M")
        title = f"{when}: {minute['succeeded']} succeeded, {minute['failed']} failed"
        floor = TOP + PLOT_HEIGHT
        for series, count in ((succeeded, minute["succeeded"]), (failed, minute["failed"])):
            height = PLOT_HEIGHT * count / top
            floor -= height
            series.append(Bar(round(x, 2), round(floor, 2), bar_width, round(height, 2), title))
        if i % 10 == 0 or i == len(minutes) - 1:
            labels.append({"x": round(x + slot * 0.4, 2), "text": when})
    return {
        **_frame(top),
        "succeeded": succeeded,
        "failed": failed,
        "labels": labels,
        "total_succeeded": sum(m["succeeded"] for m in minutes),
        "total_failed": sum(m["failed"] for m in minutes),
    }


def line_chart(series: dict[str, list[tuple[datetime, float | None]]], *, start: datetime, end: datetime) -> dict:
    """One line per series over [start, end]; a None value breaks its line (no sample, or not
    shown: a paused queue's latency). Lines are lists of "x,y" point strings for <polyline>."""
    span = max((end - start).total_seconds(), 1.0)
    values = [value for points in series.values() for _, value in points if value is not None]
    top = nice_ceiling(max(values, default=0))

    def point(when: datetime, value: float) -> str:
        x = LEFT + PLOT_WIDTH * min(max((when - start).total_seconds() / span, 0.0), 1.0)
        return f"{x:.1f},{TOP + PLOT_HEIGHT * (1 - value / top):.1f}"

    lines = []
    for name, points in series.items():
        segments, current = [], []
        for when, value in points:
            if value is None:
                segments, current = segments + [current] if current else segments, []
            else:
                current.append(point(when, value))
        segments = segments + [current] if current else segments
        last = next((value for _, value in reversed(points) if value is not None), None)
        colour = QUEUE_COLOURS.get(name, "#417690")
        lines.append({"name": name, "colour": colour, "segments": [" ".join(s) for s in segments], "last": last})
    labels = []
    for i in range(7):
        when = datetime.fromtimestamp(start.timestamp() + span * i / 6, tz=start.tzinfo)
        anchor = "start" if i == 0 else "end" if i == 6 else "middle"  # the edge labels stay inside
        labels.append({"x": round(LEFT + PLOT_WIDTH * i / 6, 2), "text": when.strftime("%H:%M"), "anchor": anchor})
    return {**_frame(top), "lines": lines, "labels": labels, "samples": sum(len(p) for p in series.values())}
