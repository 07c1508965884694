"""The overview's throughput chart as SVG geometry, drawn by the template without any JavaScript."""

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1), so the axis reads well."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def throughput_chart(minutes: list[dict]) -> dict:
    """Bars per minute (processed, and failed in front of them), the y ticks and the time labels."""
    top = nice_ceiling(max((m["processed"] for m in minutes), default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(minutes), 1)
    bar_width = round(slot * 0.8, 2)
    processed, failed, labels = [], [], []
    for i, minute in enumerate(minutes):
        x = LEFT + i * slot + slot * 0.1
        when = minute["minute"].strftime("%H:%M")
        title = f"{when}: {minute['processed']} processed, {minute['failed']} failed"
        for series, count in ((processed, minute["processed"]), (failed, minute["failed"])):
            height = plot_height * count / top
            series.append(Bar(round(x, 2), round(TOP + plot_height - height, 2), bar_width, round(height, 2), title))
        if i % 10 == 0 or i == len(minutes) - 1:
            labels.append({"x": round(x + slot * 0.4, 2), "text": when})
    fractions = (0, 1) if top == 1 else (0, 0.5, 1)
    ticks = [{"y": round(TOP + plot_height * (1 - f), 2), "value": f"{top * f:g}"} for f in fractions]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": TOP + plot_height,
        "processed": processed,
        "failed": failed,
        "ticks": ticks,
        "labels": labels,
        "label_y": HEIGHT - 8,
        "total_processed": sum(m["processed"] for m in minutes),
        "total_failed": sum(m["failed"] for m in minutes),
    }
