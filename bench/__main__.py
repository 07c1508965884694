"""`python -m bench <scenario> [flags]`; `python -m bench all` runs every scenario at its default size."""

import argparse
import subprocess
import sys

from . import (
    limits,
    recurring,
    schedules_api,
    scheduling,
    submit_api,
    tasks_enqueue,
    throughput,
    unique_submit,
    workloads,
)

SCENARIOS = {
    "throughput": (
        throughput.run,
        "1: end-to-end jobs/s against bare Celery",
        {"jobs": 20_000, "concurrency": 2, "repeats": 3},
    ),
    "submit-api": (
        submit_api.run,
        "2: single and bulk submit under gunicorn; enqueue-to-start",
        {"seconds": 15, "connections": 8, "bulk_requests": 20, "bulk_clients": 2, "rate": 200.0},
    ),
    "priority": (
        scheduling.priority,
        "3: start delay of high jobs behind a low backlog",
        {"lows": 10_000, "highs": 20, "low_ms": 10},
    ),
    "delays": (
        scheduling.delays,
        "4: lateness of delayed jobs against Celery countdown",
        {"jobs": 10_000, "spread": 60.0, "lead": 5.0, "celery": 1},
    ),
    "io-bound": (
        workloads.io_bound,
        "5: email jobs to a slow SMTP sink, threads pool against prefork",
        {"emails": 2000, "delay_ms": 50, "threads": 50, "nodes": 2},
    ),
    "growth": (
        workloads.growth,
        "6: throughput and status latency with 1k..1M stored jobs; retention cleanup",
        {"jobs": 5_000},
    ),
    "memory": (workloads.memory, "7: worker RSS across many jobs", {"jobs": 100_000}),
    "schedules": (
        recurring.schedules,
        "8: tick lateness of schedules firing every minute, 1 mover against 3, against delayed jobs",
        {"schedules": 10_000, "minutes": 2, "movers": "1,3"},
    ),
    "schedules-api": (
        schedules_api.run,
        "9: the schedule list (next and last run) against the job list, under gunicorn",
        {"schedules": 10_000, "runs": 5, "requests": 200},
    ),
    "unique-submit": (
        unique_submit.run,
        "10: unique submits (new keys, one key) against plain submits on the submit API",
        {"seconds": 10, "connections": 2, "rounds": 3},
    ),
    "limits": (
        limits.run,
        "11: a concurrency-limited type (2x the worker slots) against the same type unlimited",
        {"jobs": 5_000, "concurrency": 2, "ms": 10, "repeats": 3},
    ),
    "tasks-enqueue": (
        tasks_enqueue.run,
        "12: enqueue through the backend of Django's task API against the job_submit it wraps",
        {"jobs": 2_000, "rounds": 5},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="jobqueue benchmarks")
    sub = parser.add_subparsers(dest="scenario", required=True)
    sub.add_parser("all", help="every scenario at its default size")
    for name, (_, help_text, defaults) in SCENARIOS.items():
        one = sub.add_parser(name, help=help_text)
        for flag, default in defaults.items():
            one.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=type(default), default=default)
    args = vars(parser.parse_args())
    name = args.pop("scenario")
    if name == "all":
        # One process per scenario: Django's settings (and so its database) are fixed once loaded.
        for scenario in SCENARIOS:
            subprocess.run([sys.executable, "-m", "bench", scenario], check=True)
        return
    SCENARIOS[name][0](**args)


if __name__ == "__main__":
    main()
