"""Flower, the live view, speaks jobs: a real Flower and a real worker over loopback."""

import os

import pytest
import requests

from jobs import broker as broker_view
from jobs import services
from jobs.states import DEAD_LETTER_QUEUE, QUEUES
from tests import servers

from .conftest import wait_until_terminal

LOGIN = ("flower-user", "flower-test-password")


@pytest.fixture
def flower():
    """`celery -A jobqueue_site flower` as run_dev starts it, behind basic auth; its base URL."""
    port = servers.free_port()
    command = [
        servers.python(),
        "-m",
        "celery",
        "-A",
        "jobqueue_site",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
    ]
    env = {**os.environ, "FLOWER_BASIC_AUTH": ":".join(LOGIN)}
    process = servers.Process(f"flower-{port}", command, env)
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_for(lambda: _healthy(url), timeout=60, what=f"Flower on {url}", interval=0.2)
        yield url
    finally:
        process.stop()


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
