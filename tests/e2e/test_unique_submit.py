"""Unique jobs across web processes: concurrent submits of one unique job through two gunicorns make one job."""

import re
import threading

import requests

from jobs.models import Job, UniqueJobKey

SUBMITS = 50
UNIQUE = {"type": "noop", "payload": {"report": "monthly", "customer": 42}, "unique_for": 300}


def unique_duplicates(url: str) -> float:
    """jobs_unique_duplicates_total of noop jobs as one web process's /metrics reports it."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    found = re.search(r'^jobs_unique_duplicates_total\{queue="medium",type="noop"\} ([\d.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_fifty_concurrent_submits_from_two_web_processes_make_one_job(start_web, make_user):
    _, token = make_user()
    urls = [start_web(), start_web()]
    headers = {"Authorization": f"Token {token}"}
    barrier = threading.Barrier(SUBMITS)
    answers: list[tuple[int, dict]] = []

    def submit(n: int) -> None:
        session = requests.Session()
        session.get(f"{urls[n % 2]}/healthz", timeout=10)  # warm: the race is the submit, not the connect
        barrier.wait()
        response = session.post(f"{urls[n % 2]}/submit-job", json=UNIQUE, headers=headers, timeout=30)
        answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(SUBMITS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(code for code, _ in answers)
    assert len(answers) == SUBMITS
    assert codes.count(201) == 1 and codes.count(200) == SUBMITS - 1, codes
    assert len({body["id"] for _, body in answers}) == 1
    assert sorted(body["duplicate"] or "new" for _, body in answers) == ["new"] + ["unique_key"] * (SUBMITS - 1)
    [job] = Job.objects.all()
    assert str(job.pk) == answers[0][1]["id"]
    assert UniqueJobKey.objects.get().job_id == job.pk
    assert sum(unique_duplicates(url) for url in urls) == SUBMITS - 1
