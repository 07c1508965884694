"""The Flower gate's rules: which logins pass, and when an address is locked out (an injected clock)."""

import base64

from jobs.flower_gate import Gate, LoginFailures, basic, serve


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
    import http.client
    import threading

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
