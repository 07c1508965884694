import pytest

from jobs.adapters.breaker import Breaker, breaker_for


def test_a_breaker_stays_open_for_its_cooldown_after_a_failure(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("jobs.adapters.breaker.time.monotonic", lambda: clock[0])
    breaker = Breaker("redis", cooldown=2.0)
    assert not breaker.is_open()

    breaker.trip(ConnectionError("Connection refused"))

    assert breaker.is_open() and breaker.last_error == "ConnectionError: Connection refused"
    clock[0] += 1.9
    assert breaker.is_open()
    clock[0] += 0.2
    assert not breaker.is_open()


def test_a_success_closes_the_breaker_at_once():
    breaker = Breaker("redis", cooldown=60.0)
    breaker.trip(TimeoutError("timed out"))

    breaker.reset()

    assert not breaker.is_open()


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", True),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0", False),
    ],
)
def test_one_breaker_per_redis_server(one, other, same):
    assert (breaker_for(one) is breaker_for(other)) is same
    assert "secret" not in breaker_for("redis://:secret@127.0.0.1:6379/0").name
