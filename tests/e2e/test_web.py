"""The web app over HTTP under gunicorn, with real workers and a real SMTP server."""

import json
import time

import pytest
import requests
from aiosmtpd.controller import Controller

from jobs.models import Job
from tests import servers

GOOD = {"type": "email_welcome", "payload": {"email": "new@example.com"}}
HUGE_PAYLOAD = {"type": "noop", "payload": {"blob": "x" * 70_000}}
DEEP = "[" * 100_000 + "]" * 100_000
NESTED_40: dict = {}
for _ in range(40):
    NESTED_40 = {"n": NESTED_40}

# (name, raw body or JSON-able value, extra headers, text the answer must name)
MALFORMED = [
    ("invalid json", '{"type": ', {}, "JSON parse error"),
    ("empty body", "", {}, "type"),
    ("json array", [], {}, "Expected a dictionary"),
    ("json string", '"just a string"', {}, "Expected a dictionary"),
    ("json null", None, {}, "No data provided"),
    ("missing type", {"payload": {}}, {}, "type"),
    ("type not a string", {"type": 5, "payload": {}}, {}, "unknown job type"),
    ("empty type", {"type": "", "payload": {}}, {}, "type"),
    ("unknown type", {"type": "rocket", "payload": {}}, {}, "email_welcome"),
    ("payload is a list", {"type": "noop", "payload": [1, 2]}, {}, "payload"),
    ("payload is a string", {"type": "noop", "payload": "x"}, {}, "payload"),
    ("bad priority", {**GOOD, "priority": "urgent"}, {}, "priority"),
    ("numeric priority", {**GOOD, "priority": 1}, {}, "priority"),
    ("negative delay", {**GOOD, "delay": -5}, {}, "delay"),
    ("absurd delay", {**GOOD, "delay": 10**12}, {}, "delay"),
    ("delay not a number", {**GOOD, "delay": "soon"}, {}, "delay"),
    ("NaN delay", '{"type": "noop", "payload": {}, "delay": NaN}', {}, "JSON parse error"),
    ("bad run_at", {**GOOD, "run_at": "tomorrow"}, {}, "run_at"),
    ("run_at too far", {**GOOD, "run_at": "3000-01-01T00:00:00Z"}, {}, "run_at"),
    ("delay and run_at", {**GOOD, "delay": 5, "run_at": "2030-01-01T00:00:00Z"}, {}, "delay"),
    ("negative max_retries", {**GOOD, "max_retries": -1}, {}, "max_retries"),
    ("absurd max_retries", {**GOOD, "max_retries": 10**6}, {}, "max_retries"),
    ("max_retries not a number", {**GOOD, "max_retries": "many"}, {}, "max_retries"),
    ("zero timeout", {**GOOD, "timeout": 0}, {}, "timeout"),
    ("unknown field", {**GOOD, "colour": "red"}, {}, "colour"),
    ("oversized payload", HUGE_PAYLOAD, {}, "limit is 65536"),
    ("invalid payload field", {"type": "email_welcome", "payload": {"email": "nope"}}, {}, "email"),
    ("missing payload field", {"type": "email", "payload": {"to": "a@example.com", "body": "b"}}, {}, "subject"),
    ("long idempotency key", {**GOOD, "idempotency_key": "k" * 300}, {}, "idempotency_key"),
    ("conflicting idempotency keys", {**GOOD, "idempotency_key": "a"}, {"Idempotency-Key": "b"}, "idempotency_key"),
    ("deeply nested json", DEEP, {}, "JSON"),
    ("payload nested past the limit", {"type": "noop", "payload": NESTED_40}, {}, "limit is 32"),
    ("huge type string", {"type": "t" * 5000, "payload": {}}, {}, "type"),
    ("huge idempotency key header", GOOD, {"Idempotency-Key": "k" * 5000}, "Idempotency-Key"),
    ("wrong content type", "type=noop", {"Content-Type": "text/plain"}, "Unsupported media type"),
    ("body too large", "x" * (2 * 1024 * 1024), {}, "too large"),
]


def post(url: str, token: str, body, headers: dict) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    all_headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", **headers}
    return requests.post(f"{url}/submit-job", data=data.encode(), headers=all_headers, timeout=30)


def test_malformed_submissions_get_a_4xx_json_answer_naming_the_problem(web, make_user):
    _, token = make_user()
    failures = []
    for name, body, headers, expected in MALFORMED:
        response = post(web, token, body, headers)
        try:
            answer = response.json()
        except ValueError:
            failures.append(f"{name}: {response.status_code}, not JSON: {response.text[:200]}")
            continue
        if not 400 <= response.status_code < 500 or expected.lower() not in json.dumps(answer).lower():
            failures.append(f"{name}: {response.status_code} {json.dumps(answer)[:300]}")
    assert not failures, "\n".join(failures)
    assert Job.objects.count() == 0

    accepted = post(web, token, GOOD, {})
    assert accepted.status_code == 201, accepted.text


def test_each_token_is_rate_limited_and_refused_requests_store_nothing(start_web, make_user):
    url = start_web({"JOB_THROTTLE_USER": "5/minute"})
    _, token = make_user()

    answers = [post(url, token, {"type": "noop", "payload": {}}, {}) for _ in range(8)]

    codes = [answer.status_code for answer in answers]
    assert codes == [201] * 5 + [429] * 3
    assert "throttled" in answers[-1].json()["detail"].lower() and answers[-1].headers["Retry-After"]
    assert Job.objects.count() == 5
    _, other = make_user("other")
    assert post(url, other, {"type": "noop", "payload": {}}, {}).status_code == 201


def test_healthz_names_the_broker_when_redis_is_unreachable(start_web):
    url = start_web({"REDIS_URL": f"redis://127.0.0.1:{servers.free_port()}/0"})

    response = requests.get(f"{url}/healthz", timeout=30)

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("error")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": envelope.content.decode("utf-8", "replace")}
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=servers.free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_an_email_job_is_delivered_to_a_real_smtp_server(web, start_worker, make_user, smtp_server):
    controller, inbox = smtp_server
    start_worker("mail", env={"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(controller.port)})
    _, token = make_user()
    body = {"type": "email", "payload": {"to": "ann@example.com", "subject": "Report ready", "body": "See it."}}

    submitted = post(web, token, body, {})
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    status = poll_status(web, token, job_id, until={"succeeded", "dead"}, timeout=60)

    assert status["status"] == "succeeded", status
    [message] = inbox.messages
    assert message["to"] == ["ann@example.com"]
    assert "Subject: Report ready" in message["data"] and "See it." in message["data"]
    assert (status["attempts"], status["retries"], status["error"]) == (1, 0, None)
    assert status["result"] == {"sent": 1, "to": ["ann@example.com"]}
    [attempt] = status["history"]
    assert attempt["number"] == 1 and attempt["outcome"] == "succeeded" and attempt["worker"].startswith("mail@")
    assert status["created_at"] <= status["started_at"] <= status["finished_at"]
    assert attempt["started_at"] <= attempt["finished_at"] == status["finished_at"]


def poll_status(url: str, token: str, job_id: str, *, until: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{url}/job-status/{job_id}", headers={"Authorization": f"Token {token}"}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.1)
