"""The client package's decisions, run by hand: Retry-After, backoff, idempotency keys, error fields.

The plans (jobqueue_client.calls) make every decision without I/O, so these tests answer their
requests themselves. The last tests time the retries of both clients against a small real HTTP
server on loopback that answers 503 or 429 with Retry-After first.
"""

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobqueue_client import (
    FINISHED,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Job,
    RateLimited,
    RetryPolicy,
    Submission,
    Unavailable,
    ValidationError,
    WaitTimeout,
    calls,
)
from jobqueue_client.calls import Request, Response, Sleep, Unreachable
from jobqueue_client.errors import error_for
from jobqueue_client.retry import parse_retry_after
from jobs.rules.states import FINISHED as SERVER_FINISHED
from tests.servers import free_port

JOB = {"id": "5f0c1b6e-0000-4000-8000-000000000001", "type": "noop", "status": "queued", "priority": "medium"}
POLICY = RetryPolicy(retries=3, backoff=0.5, backoff_max=8.0, retry_after_max=30.0)


def answer(status: int, body: object = None, **headers: str) -> Response:
    named = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    return Response(status, named, json.dumps(body if body is not None else JOB).encode())


def body_of(request: Request) -> dict:
    return json.loads(request.body)


class Driver:
    """Runs a plan, answering its requests from a list; records what it sent and slept."""

    def __init__(self, *replies: Response | Unreachable) -> None:
        self.replies = list(replies)
        self.sent: list[Request] = []
        self.slept: list[float] = []

    def run(self, plan):
        try:
            step = next(plan)
            while True:
                if isinstance(step, Sleep):
                    self.slept.append(step.seconds)
                    step = plan.send(None)
                else:
                    self.sent.append(step)
                    step = plan.send(self.replies.pop(0))
        except StopIteration as done:
            return done.value


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5), ("-1", None), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_measured_from_the_answers_date():
    # Given a server whose clock is an hour behind ours
    header, date = "Wed, 21 Oct 2026 07:28:10 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"
    ours = datetime(2026, 10, 21, 8, 28, 0, tzinfo=UTC)

    assert parse_retry_after(header, date=date, now=ours) == 10.0
    # without a Date header, our clock is all there is: that time has passed
    assert parse_retry_after(header, now=ours) == 0.0
    assert parse_retry_after(header, now=datetime(2026, 10, 21, 7, 27, 40, tzinfo=UTC)) == 30.0


def test_a_retry_after_is_waited_as_given_up_to_the_cap_and_only_while_retries_are_left():
    assert POLICY.wait_after_answer(1, 429, 7.0) == 7.0
    assert POLICY.wait_after_answer(3, 503, 0.0) == 0.0
    assert POLICY.wait_after_answer(1, 503, 31.0) is None  # asks for more than retry_after_max
    assert POLICY.wait_after_answer(4, 429, 1.0) is None  # the three retries are used up
    assert POLICY.wait_after_answer(1, 400, 1.0) is None
    assert POLICY.wait_after_answer(1, 500, None) is None
    assert POLICY.wait_after_answer(1, 502, 2.0) == 2.0  # a gateway's "not now" too


def test_the_backoff_doubles_up_to_its_maximum_with_half_of_it_jitter():
    assert [POLICY.backoff_for(n, rand=lambda: 0.0) for n in (1, 2, 3, 6)] == [0.25, 0.5, 1.0, 4.0]
    assert [POLICY.backoff_for(n, rand=lambda: 1.0) for n in (1, 2, 3, 6)] == [0.5, 1.0, 2.0, 8.0]
    # an answer without Retry-After waits the backoff too
    assert 0.25 <= POLICY.wait_after_answer(1, 503, None) <= 0.5


# --- idempotency keys --------------------------------------------------------------------


def test_a_submit_retried_after_a_503_sends_the_same_key_and_body_after_the_retry_after():
    driver = Driver(answer(503, {"detail": "the database is unavailable", "service": "database"}, retry_after="2"),
                    answer(201, {**JOB, "duplicate": None}))  # fmt: skip

    job = driver.run(calls.submit(Submission("noop", {"n": 1}), POLICY))

    first, second = driver.sent
    assert driver.slept == [2.0]
    assert first.body == second.body
    key = body_of(first)["idempotency_key"]
    assert len(key) == 36 and body_of(first) == {"type": "noop", "payload": {"n": 1}, "idempotency_key": key}
    assert job.id == JOB["id"] and job.created is True


def test_each_submit_call_has_its_own_key_and_a_given_key_is_kept():
    driver = Driver(answer(201), answer(201), answer(200, {**JOB, "duplicate": "idempotency_key"}))

    driver.run(calls.submit(Submission("noop"), POLICY))
    driver.run(calls.submit(Submission("noop"), POLICY))
    again = driver.run(calls.submit(Submission("noop", idempotency_key="signup-4711"), POLICY))

    keys = [body_of(request)["idempotency_key"] for request in driver.sent]
    assert keys[0] != keys[1] and keys[2] == "signup-4711"
    assert again.created is False and again.duplicate == "idempotency_key"


def test_a_bulk_submit_keys_each_item_and_sends_the_same_keys_on_a_retry():
    answered = {"jobs": [{**JOB, "created": True, "duplicate": None}] * 2}
    driver = Driver(Unreachable(OSError("connection reset")), answer(201, answered))

    jobs = driver.run(calls.submit_many([Submission("noop"), {"type": "noop", "idempotency_key": "mine"}], POLICY))

    first, second = driver.sent
    assert first.body == second.body and len(driver.slept) == 1
    keys = [item["idempotency_key"] for item in body_of(first)["jobs"]]
    assert keys[1] == "mine" and len(keys[0]) == 36
    assert [job.created for job in jobs] == [True, True]


def test_a_connection_that_keeps_failing_is_a_connection_failed_after_the_retries():
    driver = Driver(*[Unreachable(ConnectionRefusedError("refused"))] * 4)

    with pytest.raises(ConnectionFailed, match="refused"):
        driver.run(calls.get("some-id", POLICY))

    assert len(driver.sent) == 4 and len(driver.slept) == 3


# --- errors ------------------------------------------------------------------------------


def test_a_429_after_the_retries_is_rate_limited_with_the_answers_fields():
    throttled = answer(429, {"detail": "Request was throttled. Expected available in 1 second."}, retry_after="1")
    driver = Driver(*[throttled] * 4)

    with pytest.raises(RateLimited) as raised:
        driver.run(calls.submit(Submission("noop"), POLICY))

    assert driver.slept == [1.0, 1.0, 1.0]
    assert raised.value.status == 429 and raised.value.retry_after == 1.0
    assert raised.value.message.startswith("Request was throttled")


def test_a_retry_after_over_the_cap_is_not_waited_for():
    driver = Driver(answer(503, {"detail": "down", "service": "broker"}, retry_after="120"))

    with pytest.raises(Unavailable) as raised:
        driver.run(calls.get("some-id", POLICY))

    assert driver.slept == [] and raised.value.retry_after == 120.0 and raised.value.service == "broker"


def test_field_errors_are_named_by_their_path():
    bulk = error_for(400, json.dumps({"jobs": [{}, {"type": ["unknown job type 'rocket'"]}]}).encode())
    payload = error_for(400, json.dumps({"payload": {"email": ["Enter a valid email address."]}}).encode())
    html = error_for(502, b"<html>Bad Gateway</html>")

    assert isinstance(bulk, ValidationError) and bulk.field == "jobs[1].type"
    assert bulk.errors == {"jobs[1].type": ["unknown job type 'rocket'"]}
    assert payload.field == "payload.email" and payload.message == "payload.email: Enter a valid email address."
    assert html.status == 502 and html.message == "<html>Bad Gateway</html>" and html.errors == {}


def test_a_cancel_answered_conflict_returns_the_job_when_it_is_cancelled_already():
    conflict = answer(409, {"detail": "The job is not in a state that allows this change."})
    done = Driver(conflict, answer(200, {**JOB, "status": "cancelled"}))
    started = Driver(conflict, answer(200, {**JOB, "status": "running"}))

    assert done.run(calls.cancel(JOB["id"], POLICY)).status == "cancelled"
    with pytest.raises(Conflict) as raised:
        started.run(calls.cancel(JOB["id"], POLICY))
    assert raised.value.status == 409 and [r.path for r in started.sent][1] == f"/job-status/{JOB['id']}"


def test_wait_gives_up_at_its_timeout_with_the_last_status_seen():
    now = [0.0]
    driver = Driver(*[answer(200, {**JOB, "status": "running"})] * 10)

    def run():
        plan = calls.wait(JOB["id"], POLICY, timeout=1.0, poll_interval=0.4, clock=lambda: now[0])
        step = next(plan)
        while True:
            if isinstance(step, Sleep):
                now[0] += step.seconds
                step = plan.send(None)
            else:
                step = plan.send(driver.replies.pop(0))

    with pytest.raises(WaitTimeout) as raised:
        run()

    assert raised.value.job.status == "running" and now[0] == pytest.approx(1.0)


def test_finished_means_what_it_means_on_the_server():
    assert set(SERVER_FINISHED) == FINISHED
    assert Job.from_api({**JOB, "status": "dead"}).finished


# --- the clients' timing against a real server -------------------------------------------


class Flaky(BaseHTTPRequestHandler):
    """Answers the first `refusals` submits with `status` and Retry-After, then 201."""

    status, retry_after, refusals = 503, "1", 1
    seen: list[tuple[float, dict]]  # (when, body) of each submit

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((time.monotonic(), body))
        if len(self.seen) <= self.refusals:
            self.reply(self.status, {"detail": "not now"}, {"Retry-After": self.retry_after})
        else:
            self.reply(201, {**JOB, "idempotency_key": body["idempotency_key"], "duplicate": None}, {})

    def reply(self, status: int, body: dict, headers: dict) -> None:
        content = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    """Starts a Flaky server on a free loopback port; returns its URL and the list of what it was sent."""
    started: list[ThreadingHTTPServer] = []

    def start(status: int, retry_after: str, refusals: int = 1) -> tuple[str, list[tuple[float, dict]]]:
        seen: list[tuple[float, dict]] = []
        answers = {"status": status, "retry_after": retry_after, "refusals": refusals, "seen": seen}
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), type("Answers", (Flaky,), answers))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [503, 429])
def test_the_blocking_client_waits_the_retry_after_and_sends_the_same_key(flaky_server, status):
    url, seen = flaky_server(status, "1")

    with Client(url, "token") as client:
        job = client.submit("noop")

    (refused_at, refused), (accepted_at, accepted) = seen
    assert 1.0 <= accepted_at - refused_at < 1.9
    assert refused["idempotency_key"] == accepted["idempotency_key"] == job.idempotency_key


def test_the_asyncio_client_waits_an_http_date_retry_after(flaky_server):
    retry_at = datetime.fromtimestamp(time.time() + 2, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    url, seen = flaky_server(503, retry_at)

    async def submit() -> Job:
        async with AsyncClient(url, "token") as client:
            return await client.submit("noop", {"n": 1})

    job = asyncio.run(submit())

    (refused_at, refused), (accepted_at, accepted) = seen
    # the date has a resolution of a second, and the server sent no Date header
    assert 0.9 <= accepted_at - refused_at < 2.9
    assert refused == accepted and job.idempotency_key == accepted["idempotency_key"]


def test_a_server_that_keeps_refusing_is_given_up_after_the_retries(flaky_server):
    url, seen = flaky_server(503, "0", refusals=10)

    with Client(url, "token", retries=2) as client, pytest.raises(Unavailable) as raised:
        client.submit("noop")

    assert len(seen) == 3 and raised.value.retry_after == 0.0


def test_nothing_listening_is_a_connection_failed_after_backing_off():
    started = time.monotonic()
    with (
        Client(f"http://127.0.0.1:{free_port()}", "token", retries=2, backoff=0.1) as client,
        pytest.raises(ConnectionFailed),
    ):
        client.get("some-id")
    # two backoffs: 0.05-0.1 s, then 0.1-0.2 s
    assert 0.15 <= time.monotonic() - started < 2.0
