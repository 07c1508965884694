"""Scenario 12: enqueue through the backend of Django's task API (`task.enqueue`) against the
`job_submit` it wraps, given the payload the backend makes, in the same run.

Each call is its own transaction from this process, as a view's enqueue is: validation, the
INSERT, the commit and the publish to Redis after it. No worker runs; the queues are emptied
between rounds. The two alternate call by call (one of each, in turns of order), so the load of
a shared machine falls on both alike; a round's ratio is of the two rates over its calls, and
the result is the median of the rounds' ratios.
"""

import statistics
import time

from .measure import ms
from .report import percentiles, save
from .stack import running_stack

PATH = "bench.task_functions.touch"
KINDS = ("job_submit", "backend")
NAMES = {"job_submit": "job_submit(type='django_task', ...)", "backend": "task.enqueue(...) through JobQueueBackend"}


def _round(count: int) -> dict[str, list[float]]:
    """`count` enqueues each way, alternating; the seconds each call took, by kind."""
    from jobs.services import job_submit
    from jobs.tasks_backend import TASK_JOB_TYPE

    from .task_functions import touch

    def backend(n: int) -> None:
        touch.enqueue(n, label="bench")

    def submit(n: int) -> None:
        payload = {"task": PATH, "args": [n], "kwargs": {"label": "bench"}, "takes_context": False}
        job_submit(type=TASK_JOB_TYPE, payload=payload, priority="medium")

    calls = {"job_submit": submit, "backend": backend}
    took: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for n in range(count):
        for kind in KINDS if n % 2 == 0 else reversed(KINDS):
            started = time.perf_counter()
            calls[kind](n)
            took[kind].append(time.perf_counter() - started)
    return took


def _empty_queues() -> None:
    from jobs.adapters import broker

    for queue in broker.queue_lengths():
        broker.drop_queue(queue)


def run(*, jobs: int = 2_000, rounds: int = 5) -> dict:
    """`rounds` of `jobs` enqueues each way."""
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    with running_stack() as stack:
        _round(200)  # warm up: connections, prepared statements
        for round_ in range(rounds):
            _empty_queues()
            stack.settle()
            for kind, took in _round(jobs).items():
                runs[kind].append({"per_s": len(took) / sum(took), **percentiles(took)})
            line = ", ".join(f"{kind} {runs[kind][-1]['per_s']:.0f}/s" for kind in KINDS)
            print(f"round {round_ + 1}: {line}")
        _empty_queues()
    ratios = [b["per_s"] / s["per_s"] for b, s in zip(runs["backend"], runs["job_submit"], strict=True)]
    ratio = statistics.median(ratios)
    medians = {
        kind: {measure: statistics.median(one[measure] for one in each) for measure in ("per_s", "p50", "p99")}
        for kind, each in runs.items()
    }
    result = {"jobs": jobs, "rounds": rounds, "runs": runs, "ratios": ratios, "ratio": ratio}
    rows = [
        (f"{NAMES[kind]}, a transaction each", f"{m['per_s']:.0f}/s, p50 {ms(m['p50'])}, p99 {ms(m['p99'])}")
        for kind, m in medians.items()
    ]
    rows.append(("backend against job_submit, per round", ", ".join(f"{one:.2f}x" for one in ratios)))
    rows.append(("rounds", f"{rounds} of {jobs:,} enqueues each way, alternating call by call; no worker"))
    headline = f"enqueue through the backend against job_submit: {ratio:.2f}x (target at least 0.9x)"
    save("tasks-enqueue", result, rows, headline=headline)
    return result
