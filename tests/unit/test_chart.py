from datetime import UTC, datetime, timedelta

import pytest

from jobs.adapters.store import percentile
from jobs.admin.chart import HEIGHT, line_chart, nice_ceiling, throughput_chart
from jobs.formatting import duration, seconds, table

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def minutes(counts: list[tuple[int, int]]) -> list[dict]:
    """(succeeded, failed) per minute."""
    return [
        {"minute": START + timedelta(minutes=i), "succeeded": s, "failed": f, "processed": s + f}
        for i, (s, f) in enumerate(counts)
    ]


def test_the_axis_top_is_a_round_number_at_or_above_the_highest_bar():
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 10, 11, 480)] == [1, 1, 5, 10, 10, 20, 500]


def test_bars_are_proportional_and_failed_bars_stack_on_the_succeeded_ones():
    chart = throughput_chart(minutes([(10, 0), (5, 5), (0, 0)]))

    full, half, empty = chart["succeeded"]
    failed_on_half = chart["failed"][1]
    assert full.height == 2 * half.height and empty.height == 0
    assert failed_on_half.height == half.height and chart["failed"][0].height == 0
    assert full.y + full.height == half.y + half.height == chart["baseline"] < HEIGHT
    assert failed_on_half.y + failed_on_half.height == half.y  # on top of its succeeded bar
    assert full.x < half.x < empty.x
    assert (chart["total_succeeded"], chart["total_failed"]) == (15, 5)
    assert [tick["value"] for tick in chart["ticks"]] == ["0", "5", "10"]
    assert "12:01: 5 succeeded, 5 failed" == half.title


def test_an_empty_hour_draws_flat_bars_and_labels_every_ten_minutes():
    chart = throughput_chart(minutes([(0, 0)] * 60))

    assert len(chart["succeeded"]) == 60 and all(bar.height == 0 for bar in chart["succeeded"])
    assert [label["text"] for label in chart["labels"]] == [
        "12:00",
        "12:10",
        "12:20",
        "12:30",
        "12:40",
        "12:50",
        "12:59",
    ]
    assert [tick["value"] for tick in chart["ticks"]] == ["0", "1"]


def test_tables_align_columns_and_durations_read_short():
    assert table([("a", None), ("long", 3)], ("NAME", "N")).splitlines() == ["NAME  N", "a     -", "long  3"]
    assert [duration(s) for s in (None, 5, 61, 7200, 90000)] == ["-", "5s", "1m", "2h", "1d"]


def test_a_line_chart_breaks_its_line_where_a_value_is_missing():
    points = [(START + timedelta(minutes=i), value) for i, value in enumerate([0, 4, None, 8, 8])]
    chart = line_chart({"high": points, "low": []}, start=START, end=START + timedelta(minutes=4))

    high, low = chart["lines"]
    assert [len(segment.split()) for segment in high["segments"]] == [2, 2] and low["segments"] == []
    first, second = (segment.split() for segment in high["segments"])
    assert first[0] == f"{chart['left']:.1f},{chart['baseline']:.1f}"  # 0 at the start: bottom left
    assert second[-1].startswith(f"{chart['right']:.1f},")  # the last sample at the right edge
    assert [tick["value"] for tick in chart["ticks"]] == ["0", "5", "10"]
    assert (high["last"], low["last"], chart["samples"]) == (8, None, 5)


def test_percentiles_interpolate_between_ranks_like_percentile_cont():
    values = [1.0, 2.0, 3.0, 4.0]

    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.95) == pytest.approx(3.85)
    assert percentile([7.0], 0.95) == 7.0 and percentile([], 0.5) is None


def test_durations_read_to_a_useful_precision():
    assert [seconds(s) for s in (None, 0.4242, 12.34, 150.4)] == ["-", "0.42 s", "12.3 s", "150 s"]
