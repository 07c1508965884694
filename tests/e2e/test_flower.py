"""Flower, the live view, speaks jobs: a real Flower and a real worker over loopback."""

import http.client
import os

import pytest
import requests

from jobs import services
from jobs.adapters import broker as broker_view
from jobs.rules.states import DEAD_LETTER_QUEUE, QUEUES
from tests import servers

from .conftest import wait_until_terminal

LOGIN = ("flower-user", "flower-test-password")


GATE_LOGIN = ("gate", "gate-only-test-password")


@pytest.fixture
def start_flower():
    """`celery -A jobqueue_site flower` as run_dev starts it: on a private port with a login only
    the gate in front of it knows, and `manage.py run_flower_gate` on the port clients use."""
    started: list[servers.Process] = []

    def start(**gate_env: str) -> tuple[str, str]:
        port, private = servers.free_port(), servers.free_port()
        command = [servers.python(), "-m", "celery", "-A", "jobqueue_site", "flower", "--address=127.0.0.1"]
        env = {**os.environ, "FLOWER_BASIC_AUTH": ":".join(GATE_LOGIN)}
        started.append(servers.Process(f"flower-{private}", [*command, f"--port={private}"], env))
        gate = [servers.python(), "manage.py", "run_flower_gate", f"--port={port}", f"--upstream-port={private}"]
        logins = {"JOBQUEUE_FLOWER_LOGIN": ":".join(LOGIN), "JOBQUEUE_FLOWER_UPSTREAM_LOGIN": ":".join(GATE_LOGIN)}
        started.append(servers.Process(f"flower-gate-{port}", gate, {**os.environ, **logins, **gate_env}))
        url = f"http://127.0.0.1:{port}"
        servers.wait_for(lambda: _healthy(url), timeout=60, what=f"Flower on {url}", interval=0.2)
        return url, f"http://127.0.0.1:{private}"

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def flower(start_flower):
    """Flower behind its gate: the base URL clients use."""
    return start_flower()[0]


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthcheck", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def flower_get(url: str, path: str, **params) -> requests.Response:
    return requests.get(f"{url}{path}", params=params, auth=LOGIN, timeout=10)


def submit(job_type: str, payload: dict | None = None) -> str:
    job, _ = services.job_submit(type=job_type, payload=payload or {})
    return str(job.id)


def finished_task_of(url: str, job_id: str) -> dict | None:
    """Flower's entry of the job's task once it has finished, found by the job id."""
    tasks = flower_get(url, "/api/tasks", search=job_id).json()
    done = [task for task in tasks.values() if task.get("state") in ("SUCCESS", "FAILURE")]
    return done[0] if len(tasks) == 1 and done else None


def test_flower_shows_each_job_under_its_type_with_its_runtime(flower, start_worker):
    start_worker("flower", concurrency=1)
    succeeding = submit("test.progress")
    dying = submit("test.permanent")
    wait_until_terminal([succeeding, dying], timeout=60)
    servers.wait_for(lambda: broker_view.dead_letter_job_ids() == [dying], timeout=10, what="the dead-letter copy")

    found: dict[str, dict] = {}

    def both_finished() -> bool:
        for job_id in (succeeding, dying):
            found[job_id] = finished_task_of(flower, job_id) or {}
        return all(found.values())

    servers.wait_for(both_finished, timeout=30, what="both jobs' tasks in Flower", interval=0.5)
    ok, failed = found[succeeding], found[dying]
    assert (ok["name"], ok["state"]) == ("test.progress", "SUCCESS")
    assert (failed["name"], failed["state"]) == ("test.permanent", "FAILURE")
    for job_id, task in ((succeeding, ok), (dying, failed)):
        assert job_id in task["args"]
        assert isinstance(task["runtime"], float) and task["runtime"] > 0, task
        info = flower_get(flower, f"/api/task/info/{task['uuid']}").json()
        assert info["name"] == task["name"] and job_id in info["args"]

    # The dead-letter copy is parked for broker-side tools only: no task of its own in Flower.
    tasks = flower_get(flower, "/api/tasks").json()
    assert sorted(task["name"] for task in tasks.values()) == ["test.permanent", "test.progress"]
    assert not [task for task in tasks.values() if task["state"] == "PENDING"]


def test_flowers_broker_tab_shows_our_queues_and_their_depths(flower):
    # No worker: Flower lists the app's own queues, the dead-letter queue among them.
    for priority in ("low", "low", "high"):
        services.job_submit(type="test.progress", payload={}, priority=priority)

    lengths = flower_get(flower, "/api/queues/length")
    page = flower_get(flower, "/broker")

    assert lengths.status_code == 200, lengths.text
    depths = {queue["name"]: queue["messages"] for queue in lengths.json()["active_queues"]}
    assert depths == {"high": 1, "medium": 0, "low": 2, DEAD_LETTER_QUEUE: 0}
    assert page.status_code == 200, page.text[-500:]
    assert "redis://" in page.text
    for name in (*QUEUES, DEAD_LETTER_QUEUE):
        assert f">{name}<" in page.text


def test_a_guesser_is_locked_out_of_flower_and_only_the_gate_reaches_flower(start_flower):
    url, private = start_flower(JOB_LOGIN_MAX_FAILURES="3", JOB_LOGIN_LOCKOUT_SECONDS="600")
    wrong = (LOGIN[0], "a-guess")

    # A browser's first request, without credentials, is asked for them and not counted.
    for _ in range(4):
        assert requests.get(f"{url}/", timeout=10).status_code == 401
    assert flower_get(url, "/api/workers").status_code == 200
    assert [requests.get(f"{url}/", auth=wrong, timeout=10).status_code for _ in range(3)] == [401] * 3

    locked = flower_get(url, "/api/workers")  # the right login, from the locked-out address
    assert locked.status_code == 429 and 500 < int(locked.headers["Retry-After"]) <= 601
    assert "Too many failed logins" in locked.text
    # Another address still gets in; Flower's own port takes only the gate's login.
    other = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), source_address=("127.0.0.2", 0))
    other.request("GET", "/api/workers", headers={"Authorization": requests.auth._basic_auth_str(*LOGIN)})
    assert other.getresponse().status == 200
    assert requests.get(f"{private}/api/workers", auth=LOGIN, timeout=10).status_code == 401
    # Health and metrics stay open, as Flower keeps them, even for the locked-out address.
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 200


def test_no_flower_page_or_answer_may_be_framed(flower):
    answers = [flower_get(flower, path) for path in ("/", "/workers", "/api/workers", "/tasks")]
    answers.append(requests.get(f"{flower}/", timeout=10))  # the login challenge too

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 401]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert [len(answer.raw.headers.getlist(name)) for name in ("Server", "Date")] == [1, 1]  # the gate's only
