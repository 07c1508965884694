import pytest

from jobs.retry import after_failure, backoff_seconds


@pytest.mark.parametrize("attempt, low, high", [(1, 1, 2), (2, 2, 4), (3, 4, 8), (10, 30, 60)])
def test_backoff_stays_within_half_and_full_ceiling(attempt, low, high):
    assert backoff_seconds(attempt, base=2, cap=60, rand=lambda: 0.0) == low
    assert backoff_seconds(attempt, base=2, cap=60, rand=lambda: 1.0) == high


def test_each_wait_is_at_least_as_long_as_the_one_before_whatever_the_jitter():
    for attempt in range(1, 12):
        longest_now = backoff_seconds(attempt, base=1, cap=10_000, rand=lambda: 1.0)
        shortest_next = backoff_seconds(attempt + 1, base=1, cap=10_000, rand=lambda: 0.0)
        assert shortest_next >= longest_now


def test_a_permanent_error_is_never_retried():
    decision = after_failure(attempt=1, max_retries=5, permanent=True)
    assert not decision.retry
    assert "permanent" in decision.reason


def test_retries_until_max_retries_then_gives_up():
    assert after_failure(attempt=3, max_retries=3, permanent=False).retry
    final = after_failure(attempt=4, max_retries=3, permanent=False)
    assert not final.retry
    assert "4 attempts" in final.reason


def test_zero_retries_means_one_attempt():
    assert not after_failure(attempt=1, max_retries=0, permanent=False).retry
