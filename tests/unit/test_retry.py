import pytest

from jobs.rules.retry import MAX_REASON, after_failure, backoff_seconds


@pytest.mark.parametrize("attempt, low, high", [(1, 1, 2), (2, 2, 4), (3, 4, 8), (10, 30, 60)])
def test_backoff_stays_within_half_and_full_ceiling(attempt, low, high):
    assert backoff_seconds(attempt, base=2, cap=60, rand=lambda: 0.0) == low
    assert backoff_seconds(attempt, base=2, cap=60, rand=lambda: 1.0) == high


def test_each_wait_is_at_least_as_long_as_the_one_before_whatever_the_jitter():
    for attempt in range(1, 12):
        longest_now = backoff_seconds(attempt, base=1, cap=10_000, rand=lambda: 1.0)
        shortest_next = backoff_seconds(attempt + 1, base=1, cap=10_000, rand=lambda: 0.0)
        assert shortest_next >= longest_now


REFUSED = "SMTP 550 5.1.1 <nobody@example.com>: mailbox unavailable (recipient nobody@example.com)"


def test_a_permanent_error_is_never_retried_and_the_reason_names_the_error():
    decision = after_failure(attempt=1, max_retries=5, permanent=True, error=REFUSED)
    assert not decision.retry
    assert decision.reason == f"permanent error, not retried: {REFUSED}"


def test_retries_until_max_retries_then_gives_up():
    assert after_failure(attempt=3, max_retries=3, permanent=False).retry
    final = after_failure(attempt=4, max_retries=3, permanent=False, error="SMTP 451 4.7.1 greylisted")
    assert not final.retry
    assert final.reason == "retries exhausted, 4 attempts failed: SMTP 451 4.7.1 greylisted"


def test_a_retry_reason_names_the_wait_and_the_error():
    decision = after_failure(attempt=2, max_retries=3, permanent=False, error="SMTP 451 4.7.1 greylisted")

    assert decision.retry
    assert decision.reason == f"attempt 2 failed, retry 2 of 3 in {decision.delay:.1f}s: SMTP 451 4.7.1 greylisted"


def test_without_an_error_the_reason_is_the_decision_alone():
    assert after_failure(attempt=1, max_retries=0, permanent=True).reason == "permanent error, not retried"


def test_a_multi_line_error_is_put_on_one_line():
    decision = after_failure(attempt=4, max_retries=3, permanent=False, error="SMTP 451 first line\n  second line\n")

    assert decision.reason == "retries exhausted, 4 attempts failed: SMTP 451 first line second line"


def test_a_long_error_is_cut_short_and_the_decision_kept_whole():
    error = "SMTP 550 " + "x" * 500

    reason = after_failure(attempt=4, max_retries=3, permanent=False, error=error).reason

    assert len(reason) == MAX_REASON == 200
    assert reason.startswith("retries exhausted, 4 attempts failed: SMTP 550 xxx")
    assert reason.endswith("x…")


def test_zero_retries_means_one_attempt():
    assert not after_failure(attempt=1, max_retries=0, permanent=False).retry
