"""The client package (jobqueue_client/) against the real stack: gunicorn, Celery workers,
PostgreSQL and Redis on loopback. Both clients go through the same steps: the asyncio one
on one event loop (asyncio.Runner), awaited call by call.

The faults are real too: a low rate limit answers 429, PostgreSQL cut off behind a proxy
answers 503, and a proxy in front of the web app drops the answer to a submit it passed on.
"""

import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path

import pytest

from jobqueue_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    RateLimited,
    Submission,
    ValidationError,
    WaitTimeout,
)
from jobs.models import Job
from tests import servers
from tests.faults.proxy import TcpProxy

FLAVOURS = ["sync", "async"]
SUBMIT_LINE = re.compile(r'"POST /submit-job HTTP/1\.1" (\d{3})')


class Awaited:
    """An AsyncClient whose calls are each run to their end on one event loop."""

    def __init__(self, runner: asyncio.Runner, client: AsyncClient) -> None:
        self._runner, self._client = runner, client

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self._runner.run(method(*args, **kwargs))


@contextmanager
def client_for(flavour: str, url: str, token: str, **settings):
    if flavour == "sync":
        with Client(url, token, **settings) as client:
            yield client
        return
    with asyncio.Runner() as runner:
        client = AsyncClient(url, token, **settings)
        try:
            yield Awaited(runner, client)
        finally:
            runner.run(client.aclose())


def submit_answers(url: str, *, at_least: int = 0, until: int | None = None) -> list[int]:
    """The statuses gunicorn logged for POST /submit-job, in order (it logs a request just
    after answering it: wait for `at_least` of them, and for one answered `until`)."""
    log = servers.ARTIFACTS / f"web-{url.rsplit(':', 1)[1]}.log"

    def logged() -> list[int]:
        return [int(status) for status in SUBMIT_LINE.findall(log.read_text(errors="replace"))]

    def complete() -> bool:
        answers = logged()
        return len(answers) >= at_least and (until is None or until in answers)

    servers.wait_for(complete, timeout=10, what=f"{at_least} submits (one answered {until}) in {log}")
    return logged()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_call_against_the_live_stack(flavour, start_web, start_worker, make_user):
    url = start_web()
    start_worker("client")
    _, token = make_user()

    with client_for(flavour, url, token) as jobs:
        # submit, then wait for a worker to run it
        job = jobs.submit("test.sleep", {"ms": 50}, priority="high", max_retries=0)
        assert job.created is True and job.status == "queued" and job.priority == "high"
        assert len(job.idempotency_key) == 36 and job.duplicate is None

        done = jobs.wait(job, timeout=30, poll_interval=0.1)
        assert done.id == job.id and done.status == "succeeded" and done.result == {"slept_ms": 50}
        assert [attempt.outcome for attempt in done.history] == ["succeeded"]
        assert done.history[0].worker.startswith("client@") and done.finished_at >= done.started_at
        assert jobs.get(job.id) == done

        # bulk: every item keyed, answered in order; a dead job is finished too
        bulk = jobs.submit_many([Submission("test.sleep", {"ms": 10}), {"type": "test.permanent"}])
        assert [(j.type, j.created) for j in bulk] == [("test.sleep", True), ("test.permanent", True)]
        assert len({j.idempotency_key for j in bulk}) == 2
        assert jobs.wait(bulk[0], timeout=30, poll_interval=0.1).result == {"slept_ms": 10}
        dead = jobs.wait(bulk[1].id, timeout=30, poll_interval=0.1)
        assert dead.status == "dead" and dead.error.type == "PermanentError"

        # a job that will not run for minutes: wait gives up on time, cancel stops it
        later = jobs.submit("noop", delay=300)
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as raised:
            jobs.wait(later, timeout=0.5, poll_interval=0.1)
        assert 0.5 <= time.monotonic() - started < 3
        assert raised.value.job.status == "scheduled" and raised.value.job.id == later.id

        cancelled = jobs.cancel(later)
        assert cancelled.status == "cancelled" and jobs.get(later.id).status == "cancelled"
        assert jobs.cancel(later.id).status == "cancelled"  # again: the same answer
        with pytest.raises(Conflict) as refused:
            jobs.cancel(done)
        assert refused.value.status == 409 and refused.value.message

    assert Job.objects.count() == 4


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bad_input_raises_typed_errors_carrying_the_apis_fields(flavour, start_web, make_user):
    url = start_web()
    _, token = make_user()

    with client_for(flavour, url, token) as jobs:
        with pytest.raises(ValidationError) as unknown:
            jobs.submit("rocket", {"fuel": "lots"})
        with pytest.raises(ValidationError) as bad_payload:
            jobs.submit("email_welcome", {"email": "not an address"})
        with pytest.raises(ValidationError) as bad_item:
            jobs.submit_many([{"type": "noop"}, {"type": "rocket"}])
        task = {"task": "tests.tasks_app.tasks.add", "args": [1, 2]}
        with pytest.raises(AuthenticationError) as internal:  # the task API's type is for code only
            jobs.submit("django_task", task)
        with pytest.raises(ValidationError) as internal_item:
            jobs.submit_many([{"type": "noop"}, {"type": "django_task", "payload": task}])
        jobs.submit("noop", {"n": 1}, idempotency_key="order-17")
        with pytest.raises(IdempotencyKeyReused) as reused:
            jobs.submit("noop", {"n": 2}, idempotency_key="order-17")
        with pytest.raises(NotFound) as missing:
            jobs.get("00000000-0000-4000-8000-000000000000")
    with client_for(flavour, url, "not-a-token") as stranger, pytest.raises(AuthenticationError) as denied:
        stranger.get("00000000-0000-4000-8000-000000000000")

    assert unknown.value.status == 400 and unknown.value.field == "type"
    assert "unknown job type" in unknown.value.errors["type"][0].lower() and "noop" in unknown.value.message
    assert bad_payload.value.field == "payload.email" and bad_payload.value.errors["payload.email"]
    assert bad_item.value.field == "jobs[1].type" and list(bad_item.value.errors) == ["jobs[1].type"]
    assert internal.value.status == 403 and internal.value.field == "type" and "internal" in internal.value.message
    assert internal_item.value.field == "jobs[1].type" and "internal" in internal_item.value.errors["jobs[1].type"][0]
    assert reused.value.status == 422 and reused.value.field == "idempotency_key"
    assert missing.value.status == 404 and missing.value.message
    assert denied.value.status == 401 and "token" in denied.value.message.lower()
    assert Job.objects.count() == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_429_is_retried_after_its_retry_after(flavour, start_web, make_user):
    url = start_web({"JOB_THROTTLE_USER": "2/second"})
    _, token = make_user()

    with client_for(flavour, url, token) as jobs, client_for(flavour, url, token, retries=0) as impatient:
        jobs.submit("noop")
        jobs.submit("noop")
        started = time.monotonic()
        third = jobs.submit("noop")  # over the rate: 429, Retry-After: 1, then accepted
        waited = time.monotonic() - started
        impatient.submit("noop")
        with pytest.raises(RateLimited) as refused:
            impatient.submit("noop")

    assert submit_answers(url, at_least=6) == [201, 201, 429, 201, 201, 429]
    assert 1.0 <= waited < 2.5 and third.created is True
    assert refused.value.status == 429 and refused.value.retry_after == 1.0
    assert "throttled" in refused.value.message.lower()
    assert Job.objects.count() == 4


@pytest.fixture
def database_behind_a_proxy(postgres):
    proxy = TcpProxy(postgres.port, name="client-pg-proxy").start()
    yield proxy, f"postgres://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.database}"
    proxy.stop()


def when(condition, then, *, timeout: float = 20) -> threading.Thread:
    """Calls `then` in a thread as soon as `condition` holds."""

    def watch() -> None:
        servers.wait_for(condition, timeout=timeout, what="the condition", interval=0.02)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_503_while_the_database_is_away_is_retried_after_its_retry_after(
    flavour, start_web, make_user, database_behind_a_proxy
):
    proxy, database_url = database_behind_a_proxy
    url = start_web({"DATABASE_URL": database_url, "API_RETRY_AFTER_SECONDS": "1"})
    _, token = make_user()

    with client_for(flavour, url, token) as jobs:
        proxy.down()  # PostgreSQL unreachable from the web app
        back = when(lambda: 503 in submit_answers(url), proxy.up)  # and back during the client's wait
        started = time.monotonic()
        job = jobs.submit("noop", {"order": 17})
        waited = time.monotonic() - started
        back.join(5)

    # Each web worker finds its connection cut once (a 503), then connects again.
    answers = submit_answers(url, at_least=2, until=201)  # the client has its 201: its line comes
    refusals = answers.count(503)
    assert answers == [503] * refusals + [201] and 1 <= refusals <= 2
    assert refusals <= waited < refusals + 2 and job.created is True
    stored = Job.objects.get()
    assert str(stored.id) == job.id and stored.idempotency_key == job.idempotency_key


class AnswerLost:
    """A loopback proxy in front of the web app that passes the first request on and, once its
    answer starts to come back, resets the client's connection instead: the request was done,
    its answer lost in the network. Later connections pass through."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", servers.free_port()))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            lose = self.connections == 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, lose), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, lose: bool) -> None:
        try:
            while data := source.recv(65536):
                if lose:
                    sink.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_submit_whose_answer_was_lost_is_retried_with_its_key_and_answered_with_the_same_job(start_web, make_user):
    url = start_web()
    _, token = make_user()
    proxy = AnswerLost(int(url.rsplit(":", 1)[1]))
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", token, backoff=0.1) as jobs:
            job = jobs.submit("noop", {"order": 18})
    finally:
        proxy.close()

    # The server made the job on the first try; the retry, with the same key, was answered with it.
    assert submit_answers(url, at_least=2) == [201, 200]
    assert proxy.connections == 2
    assert job.created is False and job.duplicate == "idempotency_key"
    stored = Job.objects.get()
    assert str(stored.id) == job.id and stored.idempotency_key == job.idempotency_key


# --- the documentation's example, as a reader runs it --------------------------------------

CLIENT_PAGE = servers.ROOT / "docs/howto/python-client.md"


def readme_client_section() -> str:
    return CLIENT_PAGE.read_text()


def site_packages_of(*distributions: str, into: Path) -> Path:
    """A directory with the installed `distributions` and everything they require, as links
    into this environment: what an offline `pip install` finds already installed."""
    into.mkdir()
    todo, done = list(distributions), set()
    while todo:
        try:
            dist = metadata.distribution(todo.pop())
        except metadata.PackageNotFoundError:
            continue  # needed on other Pythons or platforms only
        if dist.metadata["Name"].lower() in done:
            continue
        done.add(dist.metadata["Name"].lower())
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                todo.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
        site = Path(dist.locate_file(""))
        for top in {Path(str(file)).parts[0] for file in dist.files or ()} - {"..", "__pycache__"}:
            if (site / top).exists() and not (into / top).exists():
                (into / top).symlink_to(site / top)
    return into


def test_the_readme_example_runs_as_written(start_web, start_worker, make_user, tmp_path):
    section = readme_client_section()
    install = re.search(r"```bash\n(pip install [^\n]+)\n```", section).group(1)
    examples = re.findall(r"```python\n(.*?)```", section, re.S)
    assert install == "pip install ./jobqueue_client" and len(examples) == 2

    # A new service's virtualenv, offline: httpx and the build backend come from this environment.
    venv = tmp_path / "service"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    found = site_packages_of("httpx", "pip", "flit_core", into=tmp_path / "deps")
    (next(venv.glob("lib/python*/site-packages")) / "offline.pth").write_text(f"{found}\n")
    left_out = shutil.ignore_patterns("__pycache__")
    shutil.copytree(servers.ROOT / "jobqueue_client", tmp_path / "jobqueue_client", ignore=left_out)
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    pip = f"python -m {install} --no-index --no-build-isolation --quiet"
    installed = subprocess.run(
        ["bash", "-c", pip], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    url = start_web()
    start_worker("readme")
    _, token = make_user()
    outputs = []
    for number, example in enumerate(examples):
        script = tmp_path / f"example_{number}.py"
        script.write_text(example)
        ran = subprocess.run(
            [str(venv / "bin" / "python"), str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=90,
            env={**env, "JOBQUEUE_URL": url, "JOBQUEUE_TOKEN": token}, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        outputs.append(ran.stdout)

    blocking, concurrent = outputs
    assert re.search(r"^submitted [0-9a-f-]{36} queued$", blocking, re.M), blocking
    assert re.search(r"^succeeded \{.*'sent': 1", blocking, re.M), blocking
    assert "refused: 400 type" in blocking
    assert concurrent.count("succeeded") == 3, concurrent
