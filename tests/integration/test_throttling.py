"""The API's rate limits, counted in the real Redis: failed authentication counts toward the
anonymous limit, and a window's counter always expires."""

import pytest
from rest_framework.test import APIClient

from jobs.api import throttling


@pytest.fixture
def anon_rate(monkeypatch):
    """A small anonymous limit, so a test reaches it in a few requests."""
    monkeypatch.setattr(throttling.AnonRateThrottle, "rate", "3/minute", raising=False)
    throttling.counter_store()[2].reset()


def test_requests_with_a_wrong_token_or_none_count_toward_the_anonymous_limit(anon_rate, make_user):
    _, token = make_user("holder", staff=True)
    guessing = APIClient()
    guessing.credentials(HTTP_AUTHORIZATION="Token not-a-token")

    answers = [guessing.get("/api/jobs/").status_code for _ in range(3)]
    refused = guessing.get("/api/jobs/")
    without_token = APIClient().get("/api/jobs/")

    assert answers == [401, 401, 401]
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert without_token.status_code == 429
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert owner.get("/api/jobs/").status_code == 200  # a client with a valid token has its own limit


def test_a_window_counter_left_without_an_expiry_gets_one_and_locks_nobody_out(client_for, broker):
    # What the window's start and its count as two commands left when the key expired between
    # them: a counter past the limit with no expiry, which refused its token for good.
    client, prefix, _ = throttling.counter_store()
    throttling.counter_store()[2].reset()
    api = client_for("locked", staff=True)
    key = f"{prefix}throttle_user_{api.user.pk}"
    client.set(key, 10**6)

    refused = api.get("/api/jobs/")

    assert refused.status_code == 429
    assert 0 < client.pttl(key) <= 1000  # JOB_THROTTLE_USER is per second
    client.delete(key)  # the window ended
    assert api.get("/api/jobs/").status_code == 200


def test_a_window_opens_counts_and_expires_with_its_counter(anon_rate, broker):
    client, prefix, _ = throttling.counter_store()
    key = f"{prefix}throttle_anon_127.0.0.1"

    answers = [APIClient().get("/api/jobs/").status_code for _ in range(4)]

    assert answers == [401, 401, 401, 429]
    assert int(client.get(key)) == 4 and 0 < client.pttl(key) <= 60_000
    client.delete(key)  # the window ended
    assert APIClient().get("/api/jobs/").status_code == 401
    assert int(client.get(key)) == 1 and 0 < client.pttl(key) <= 60_000


def test_a_login_failure_counter_left_without_an_expiry_gets_the_lockout_window(make_user, broker):
    from django.conf import settings
    from django.test import Client

    make_user("operator", staff=True)
    client, prefix, _ = throttling.counter_store()
    throttling.counter_store()[2].reset()
    key = f"{prefix}login-failures:127.0.0.9"
    client.set(key, 3)  # what the window's start and its count as two commands could leave

    Client(REMOTE_ADDR="127.0.0.9").post("/admin/login/", {"username": "operator", "password": "guess"})

    assert int(client.get(key)) == 4
    assert 0 < client.pttl(key) <= settings.JOB_LOGIN_LOCKOUT_SECONDS * 1000
