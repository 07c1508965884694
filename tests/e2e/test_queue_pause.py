"""Pausing a queue with real processes: the pause is in the database, so restarts do not undo it."""

import time

import requests

from jobqueue_site.celery import app
from jobs.adapters.dispatch import RUN_JOB_TASK
from jobs.models import Job, JobAttempt
from tests.servers import wait_for

from .conftest import wait_until_terminal

FAST_SWEEPS = {"JOB_REDISPATCH_AFTER": "0.5", "JOB_REDISPATCH_CHECK_SECONDS": "0.5"}


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.headers = url, {"Authorization": f"Token {token}"}

    def post(self, path: str, body: dict | None = None) -> dict:
        response = requests.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def get(self, path: str):
        response = requests.get(f"{self.url}{path}", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def queue(self, name: str) -> dict:
        return next(queue for queue in self.get("/api/queues/") if queue["name"] == name)


def test_a_paused_queue_runs_nothing_across_worker_and_web_restarts_until_resumed(
    start_worker, start_mover, start_web, make_user, broker
):
    _, token = make_user("ops", staff=True)
    first_web = Api(start_web(), token)
    worker = start_worker("before", concurrency=1)
    start_mover(env=FAST_SWEEPS)

    paused = first_web.post("/api/queues/medium/pause/")
    assert paused["paused"] and paused["changed_by"] == "api:ops"

    # Restart the worker, and bring up a new web process: both only know the database.
    worker.stop()
    start_worker("after", concurrency=1)
    web = Api(start_web(), token)
    assert web.queue("medium")["paused"]

    held = web.post("/submit-job", {"type": "test.count", "payload": {}})["id"]
    control = web.post("/submit-job", {"type": "test.count", "payload": {}, "priority": "high"})["id"]
    wait_until_terminal([control], timeout=60)
    # A message that slipped through (published before the pause took effect) is refused by the claim.
    app.send_task(RUN_JOB_TASK, args=[held], queue="medium")
    wait_for(lambda: broker.llen("medium") == 0, timeout=30, what="the worker to take the stray message")
    time.sleep(2)  # several redispatch sweeps of the mover

    assert Job.objects.get(pk=control).status == "succeeded"
    assert Job.objects.get(pk=held).status == "queued"
    assert not JobAttempt.objects.filter(job_id=held).exists()
    assert broker.llen("medium") == 0
    assert web.queue("medium")["queued"] == 1

    resumed = web.post("/api/queues/medium/resume/")
    assert (resumed["paused"], resumed["published"]) == (False, 1)
    statuses = wait_until_terminal([held], timeout=60)

    assert statuses == {held: "succeeded"}
    assert JobAttempt.objects.filter(job_id=held).count() == 1
    assert not first_web.queue("medium")["paused"]
