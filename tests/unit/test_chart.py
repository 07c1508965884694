from datetime import UTC, datetime, timedelta

from jobs.admin.chart import HEIGHT, nice_ceiling, throughput_chart
from jobs.formatting import duration, table

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def minutes(counts: list[tuple[int, int]]) -> list[dict]:
    return [{"minute": START + timedelta(minutes=i), "processed": p, "failed": f} for i, (p, f) in enumerate(counts)]


def test_the_axis_top_is_a_round_number_at_or_above_the_highest_bar():
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 10, 11, 480)] == [1, 1, 5, 10, 10, 20, 500]


def test_bars_are_proportional_and_failed_bars_stand_in_front_of_processed_ones():
    chart = throughput_chart(minutes([(10, 0), (5, 5), (0, 0)]))

    full, half, empty = chart["processed"]
    assert full.height == 2 * half.height and empty.height == 0
    assert chart["failed"][1].height == half.height and chart["failed"][0].height == 0
    assert full.y + full.height == half.y + half.height == chart["baseline"] < HEIGHT
    assert full.x < half.x < empty.x
    assert (chart["total_processed"], chart["total_failed"]) == (15, 5)
    assert [tick["value"] for tick in chart["ticks"]] == ["0", "5", "10"]
    assert "12:01: 5 processed, 5 failed" == half.title


def test_an_empty_hour_draws_flat_bars_and_labels_every_ten_minutes():
    chart = throughput_chart(minutes([(0, 0)] * 60))

    assert len(chart["processed"]) == 60 and all(bar.height == 0 for bar in chart["processed"])
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
