"""A steady load of clients over HTTP, as applications submit jobs: every answer is kept.

Each client submits with an idempotency key and, on a `503` or a broken connection, tries the
same submission again with the same key after the `Retry-After` it was given, as a client that
must not lose a job does. Clients also read the status of the jobs they were given.
"""

import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

# (weight, job type, payload maker, options): the mix of what the load submits.
Kind = tuple[int, str, object, dict]


def mix(run: str) -> list[Kind]:
    return [
        (55, "test.effect", lambda rnd: {"ms": rnd.choice([0, 20, 50, 200, 500])}, {}),
        (15, "test.effect", lambda rnd: {"ms": 50}, {"delay": "random"}),
        (15, "email", lambda rnd: {"to": "someone@example.com", "body": "hello"}, {"max_retries": 10}),
        (10, "test.flaky", lambda rnd: {"fail_times": 1}, {}),
        (5, "test.permanent", lambda rnd: {}, {}),
    ]


EXPECTED_END = {"test.permanent": "dead"}  # every other type ends succeeded


@dataclass
class Answer:
    at: float  # monotonic
    method: str
    status: int | None  # None: no answer (refused, reset, timed out)
    seconds: float
    retry_after: str | None = None
    body: str = ""


@dataclass
class Load:
    """`clients` threads together submitting `rate` jobs per second until `stop()`."""

    url: str
    token: str
    run: str
    rate: float = 12.0
    clients: int = 3
    give_up_after: float = 90.0
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, dict] = field(default_factory=dict)  # idempotency key -> {"id", "type"}
    failed: list[str] = field(default_factory=list)  # keys never accepted
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _counter: "itertools.count[int]" = field(default_factory=itertools.count)

    def start(self) -> "Load":
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.give_up_after + 30)

    # --- a client ------------------------------------------------------------------------

    def _client(self, number: int) -> None:
        rnd = random.Random(f"{self.run}-{number}")
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        kinds = mix(self.run)
        weights = [kind[0] for kind in kinds]
        interval = self.clients / self.rate
        while not self._stop.is_set():
            started = time.monotonic()
            _, job_type, payload, options = rnd.choices(kinds, weights)[0]
            key = f"{self.run}-{next(self._counter)}"
            body = {"type": job_type, "payload": payload(rnd), "priority": rnd.choice(["high", "medium", "low"])}
            if job_type == "email":
                body["payload"]["subject"] = key  # the SMTP sink counts deliveries by subject
            for name, value in options.items():
                body[name] = round(rnd.uniform(0.5, 3), 2) if value == "random" else value
            self._submit(session, key, body)
            if rnd.random() < 0.3 and self.accepted:
                self._read_status(session, rnd)
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _submit(self, session: requests.Session, key: str, body: dict) -> None:
        deadline = time.monotonic() + self.give_up_after
        while time.monotonic() < deadline:
            answer, job = self._request(session, "POST", "/submit-job", json=body, headers={"Idempotency-Key": key})
            if answer.status in (200, 201) and job is not None:
                with self._lock:
                    self.accepted[key] = {"id": job["id"], "type": body["type"]}
                return
            if answer.status is not None and answer.status < 500 and answer.status != 429:
                break  # refused for good: a bug of the test's own submissions
            time.sleep(self._pause(answer))
        with self._lock:
            self.failed.append(key)

    def _read_status(self, session: requests.Session, rnd: random.Random) -> None:
        with self._lock:
            job_id = rnd.choice(list(self.accepted.values()))["id"]
        self._request(session, "GET", f"/job-status/{job_id}")

    @staticmethod
    def _pause(answer: Answer) -> float:
        try:
            return min(float(answer.retry_after or 0.5), 1.0)
        except ValueError:
            return 0.5

    def _request(self, session: requests.Session, method: str, path: str, **kwargs) -> tuple[Answer, dict | None]:
        started = time.monotonic()
        try:
            response = session.request(method, self.url + path, timeout=10, **kwargs)
        except requests.RequestException:
            answer = Answer(started, method, None, time.monotonic() - started)
            job = None
        else:
            answer = Answer(
                started,
                method,
                response.status_code,
                time.monotonic() - started,
                response.headers.get("Retry-After"),
                response.text[:500],
            )
            job = response.json() if response.status_code in (200, 201) else None
        with self._lock:
            self.answers.append(answer)
        return answer, job

    # --- what happened -------------------------------------------------------------------

    def statuses(self) -> Counter:
        return Counter(answer.status for answer in self.answers)

    def slowest(self, method: str = "POST") -> float:
        return max((a.seconds for a in self.answers if a.method == method and a.status is not None), default=0.0)
