from django.test import Client, override_settings


@override_settings(METRICS_ACCESS="token", METRICS_TOKEN="a-long-metrics-token-0123")
def test_metrics_behind_a_token_refuse_other_clients():
    client = Client()

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer a-long-metrics-token-0123")
    assert allowed.status_code == 200 and b"queue_depth" in allowed.content


def test_metrics_are_open_by_default():
    assert Client().get("/metrics").status_code == 200


@override_settings(METRICS_ACCESS="token", METRICS_TOKEN="a-long-metrics-token-0123")
def test_wrong_metrics_tokens_count_toward_the_anonymous_limit(monkeypatch):
    from jobs.api import throttling

    monkeypatch.setattr(throttling.AnonRateThrottle, "rate", "2/minute", raising=False)
    throttling.counter_store()[2].reset()
    client = Client()

    answers = [client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess").status_code for _ in range(3)]

    assert answers == [401, 401, 429]
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer a-long-metrics-token-0123").status_code == 200
