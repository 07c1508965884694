"""Cluster-wide limits across real worker nodes: three `celery worker` processes and a mover
over the real PostgreSQL and Redis. What ran when is read from the attempt history."""

from datetime import timedelta

from jobs import services
from jobs.models import JobAttempt
from jobs.rules.states import Status

from .conftest import wait_until_terminal

RATE, WINDOW = 20, 10  # starts per window of seconds


def overlap(intervals: list[tuple]) -> int:
    """The most intervals (start, end) open at one moment; an end and a start at the same moment do not overlap."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: e[:2])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def attempts(job_ids) -> list[JobAttempt]:
    return list(JobAttempt.objects.filter(job_id__in=job_ids).select_related("job"))


def three_nodes(start_worker, start_mover) -> None:
    for name in ("lim1", "lim2", "lim3"):
        start_worker(name, concurrency=2)
    start_mover()


def test_a_concurrency_limit_and_a_per_key_limit_hold_across_three_nodes(start_worker, start_mover):
    three_nodes(start_worker, start_mover)
    limited = [services.job_submit(type="test.limited", payload={"ms": 300})[0].id for _ in range(20)]
    keyed = [
        services.job_submit(type="test.per_key", payload={"key": f"k{key}", "ms": 300})[0].id
        for _ in range(3)
        for key in range(10)
    ]

    statuses = wait_until_terminal(limited + keyed, timeout=90)

    assert set(statuses.values()) == {Status.SUCCEEDED}
    runs = attempts(limited)
    assert len(runs) == 20  # each ran once: a wait is no failed attempt
    # When the handlers themselves ran, by their own clock: an attempt's recorded start is taken
    # just before its claim, which may wait on the partition's lock until a slot frees.
    assert overlap([tuple(a.job.result["ran"]) for a in runs]) == 2
    assert len({a.worker for a in runs}) == 3  # the limit was shared by every node, not per node
    by_key: dict[str, list[tuple]] = {}
    for a in attempts(keyed):
        by_key.setdefault(a.job.payload["key"], []).append(tuple(a.job.result["ran"]))
    assert len(by_key) == 10 and all(len(runs) == 3 for runs in by_key.values())
    assert {key: overlap(runs) for key, runs in by_key.items()} == {f"k{key}": 1 for key in range(10)}
    assert overlap([run for runs in by_key.values() for run in runs]) > 1  # keys ran in parallel


def test_a_rate_limit_holds_across_three_nodes_in_any_sliding_window(start_worker, start_mover):
    # 20 per 10 s (an operator's override of the declared 60/minute, set before the nodes start):
    # the same sliding window as a minute's, in a sixth of the time.
    services.limit_set(type="test.rated", rate=f"{RATE}/{WINDOW}s", by="test")
    three_nodes(start_worker, start_mover)
    jobs = [services.job_submit(type="test.rated", payload={"n": n})[0].id for n in range(RATE + RATE // 2)]

    statuses = wait_until_terminal(jobs, timeout=60)

    assert set(statuses.values()) == {Status.SUCCEEDED}
    starts = sorted(a.started_at for a in attempts(jobs))
    assert len(starts) == len(jobs)
    window = timedelta(seconds=WINDOW)
    busiest = max(sum(1 for other in starts if start <= other < start + window) for start in starts)
    assert busiest <= RATE
    assert busiest >= RATE - 2  # the first window was used, not idled away
    # The ones over the rate started once the window had moved on from the first starts.
    assert all(start >= starts[0] + window for start in starts[RATE:])
    assert starts[-1] - starts[0] < window * 1.8


def test_a_node_as_wide_as_the_limit_never_waits_on_its_own_finished_jobs(start_worker):
    # Two slots under a concurrency of 2: each job's success is written before its slot takes
    # the next message, so no claim finds a finished job still counted as running.
    worker = start_worker("limfull", concurrency=2)
    jobs = [services.job_submit(type="test.limited", payload={"ms": 5})[0].id for _ in range(40)]

    statuses = wait_until_terminal(jobs, timeout=60)

    assert set(statuses.values()) == {Status.SUCCEEDED}
    assert overlap([(a.started_at, a.finished_at) for a in attempts(jobs)]) <= 2
    assert " waits: concurrency" not in worker.output()
