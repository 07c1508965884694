"""The Flower gate's rules: which logins pass, and when an address is locked out (an injected clock)."""

import base64
import http.client
import threading

from django.conf import settings
from django.test import override_settings

from jobs.adapters.flower_gate import Gate, LoginFailures, basic, serve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_locked_after_the_limit_until_the_window_from_its_first_failure_ends():
    clock = Clock()
    failures = LoginFailures(limit=3, window=600, clock=clock)

    assert [failures.count("10.0.0.1") for _ in range(2)] == [1, 2] and failures.locked_for("10.0.0.1") == 0
    clock.now += 100
    assert failures.count("10.0.0.1") == 3
    assert failures.locked_for("10.0.0.1") == 500 and failures.locked_for("10.0.0.2") == 0

    clock.now += 500  # the window, opened by the first failure, ends
    assert failures.locked_for("10.0.0.1") == 0 and failures.count("10.0.0.1") == 1


def test_only_the_exact_basic_login_passes_and_no_credentials_is_not_a_failure():
    gate = Gate("ops:pa:ss", 1, "gate:x", LoginFailures(limit=3, window=60))

    assert gate.allows(None) is None and gate.allows("") is None
    assert gate.allows(basic("ops:pa:ss")) is True and gate.allows("basic " + basic("ops:pa:ss")[6:]) is True
    wrong = ["Basic !!!", "Bearer " + basic("ops:pa:ss")[6:], basic("ops:pa"), basic("ops:pa:ss "), "Basic"]
    assert [gate.allows(header) for header in wrong] == [False] * len(wrong)
    assert base64.b64decode(basic("ops:pa:ss")[6:]) == b"ops:pa:ss"


def test_a_body_without_a_usable_length_gets_a_clear_4xx_and_never_reaches_flower():
    gate = Gate("ops:pw", 1, "gate:x", LoginFailures(limit=3, window=60))  # port 1: nothing there
    server = serve(gate, address="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = []
        for headers in ({"Content-Length": "ten"}, {"Transfer-Encoding": "chunked"}):
            client = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            client.putrequest("POST", "/api/task/revoke/x")
            for name, value in {"Authorization": basic("ops:pw"), **headers}.items():
                client.putheader(name, value)
            client.endheaders()
            answer = client.getresponse()
            answers.append((answer.status, answer.read().decode(), answer.getheader("X-Frame-Options")))
            client.close()
    finally:
        server.shutdown()
        server.server_close()

    assert [status for status, _, _ in answers] == [400, 411]
    assert all("Content-Length" in text and framing == "DENY" for _, text, framing in answers)


def _wrong_logins(port: int, forwarded_for: list[str]) -> list[int]:
    """One wrong login per X-Forwarded-For value, all from 127.0.0.1: the statuses answered."""
    statuses = []
    for forwarded in forwarded_for:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        client.request("GET", "/", headers={"Authorization": basic("ops:guess"), "X-Forwarded-For": forwarded})
        statuses.append(client.getresponse().status)
        client.close()
    return statuses


def trusted_proxies(count: int) -> override_settings:
    """JOB_TRUSTED_PROXIES as the API throttle reads it (DRF's NUM_PROXIES)."""
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": count})


@trusted_proxies(1)
def test_behind_a_trusted_proxy_failures_count_per_forwarded_client_as_the_api_throttle_sees_it():
    # Given one trusted proxy, every request arriving through it from 127.0.0.1
    failures = LoginFailures(limit=2, window=600)
    server = serve(Gate("ops:pw", 1, "gate:x", failures), address="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # When one client guesses until locked out (the proxy appends the address it saw last) ...
        guesser = _wrong_logins(server.server_address[1], ["10.0.0.1", "198.51.100.7, 10.0.0.1", "10.0.0.1"])
        # ... then only that client is locked out, not every client of the proxy.
        others = _wrong_logins(server.server_address[1], ["10.0.0.2"])
    finally:
        server.shutdown()
        server.server_close()

    assert guesser == [401, 401, 429] and others == [401]
    assert failures.locked_for("10.0.0.1") > 0
    assert failures.locked_for("127.0.0.1") == failures.locked_for("10.0.0.2") == 0


@trusted_proxies(0)
def test_without_trusted_proxies_a_forged_forwarded_for_does_not_escape_the_lockout():
    failures = LoginFailures(limit=2, window=600)
    server = serve(Gate("ops:pw", 1, "gate:x", failures), address="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        statuses = _wrong_logins(server.server_address[1], ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    finally:
        server.shutdown()
        server.server_close()

    assert statuses == [401, 401, 429] and failures.locked_for("127.0.0.1") > 0
