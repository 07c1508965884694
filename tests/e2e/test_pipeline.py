"""The whole pipeline with real workers: priority, exactly-once runs, duplicate deliveries."""

import pytest

from jobs import services
from jobs.adapters import dispatch
from jobs.models import Job, JobAttempt
from tests.handlers import EFFECTS_KEY

from .conftest import wait_until_terminal


def submit(job_type: str, payload: dict | None = None, **options) -> str:
    job, _ = services.job_submit(type=job_type, payload=payload or {}, **options)
    return str(job.id)


def test_high_jobs_start_before_a_backlog_of_low_jobs(start_worker):
    start_worker("prio", concurrency=1)
    lows = [submit("test.sleep", {"ms": 100}, priority="low") for _ in range(50)]
    highs = [submit("test.sleep", {"ms": 100}, priority="high") for _ in range(3)]

    wait_until_terminal(lows + highs, timeout=120)

    attempts = JobAttempt.objects.filter(job_id__in=lows + highs).values_list("job_id", "started_at")
    started = {str(job_id): when for job_id, when in attempts}
    for high in highs:
        overtaken = sum(started[low] > started[high] for low in lows)
        assert overtaken >= 40, f"high job {high} started after {50 - overtaken} of 50 low jobs"


@pytest.fixture(scope="module")
def two_workers(module_starter):
    """Two worker nodes, shared by the tests that only submit to them. They run from the first
    test that asks for them to the end of the module: the priority test, which needs a node of
    its own, comes before (pytest runs a module's tests in file order)."""
    return [module_starter.worker(name, concurrency=2) for name in ("alpha", "beta")]


def test_two_thousand_jobs_on_two_workers_each_run_exactly_once(two_workers, broker):
    ids = [submit("test.count") for _ in range(1000)]  # one message each
    bulk = services.jobs_submit_many(submissions=[{"type": "test.count", "payload": {}}] * 1000)
    ids += [str(job.id) for job, _ in bulk]  # messages built by the bulk publisher

    statuses = wait_until_terminal(ids, timeout=240)

    assert set(statuses.values()) == {"succeeded"}
    effects = broker.hgetall(EFFECTS_KEY)
    assert len(effects) == 2000 and set(effects.values()) == {"1"}
    assert set(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
    assert JobAttempt.objects.filter(job_id__in=ids).count() == 2000
    nodes = {worker.split("@")[0] for worker in JobAttempt.objects.values_list("worker", flat=True)}
    assert nodes == {"alpha", "beta"}


def test_a_message_delivered_twice_runs_the_handler_once(two_workers, broker):
    job_id = submit("test.count", {"ms": 500})
    # The same message again while the first copy is in flight, and once more after the end.
    dispatch.send_jobs([(job_id, "medium", None, "test.count")])

    wait_until_terminal([job_id], timeout=60)
    dispatch.send_jobs([(job_id, "medium", None, "test.count")])
    wait_for_empty_queues(broker)

    assert broker.hget(EFFECTS_KEY, job_id) == "1"
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert job.history.count() == 1


def wait_for_empty_queues(broker, timeout: float = 30) -> None:
    from tests.servers import wait_for

    def drained() -> bool:
        return sum(broker.llen(q) for q in ("high", "medium", "low")) == 0 and broker.hlen("unacked") == 0

    wait_for(drained, timeout=timeout, what="the queues to drain")


def test_a_worker_writes_each_jobs_lines_in_order(two_workers):
    done = [submit("test.count") for _ in range(20)]
    failed = submit("test.permanent")

    wait_until_terminal([*done, failed], timeout=60)

    def lines_of(job_id: str) -> list[str]:
        output = "".join(worker.output() for worker in two_workers)  # a job's lines are all in one log
        return [line for line in output.splitlines() if f"job_id={job_id}" in line]

    from tests.servers import wait_for

    # Pool processes write their lines from a buffer, a few milliseconds after the fact.
    wait_for(lambda: all(len(lines_of(job_id)) == 2 for job_id in [*done, failed]), timeout=10, what="job lines")
    for job_id in done:
        started, succeeded = lines_of(job_id)
        assert "job started" in started and "job succeeded" in succeeded
    started, failure = lines_of(failed)
    assert "job started" in started and "job attempt failed" in failure and "outcome=dead" in failure
