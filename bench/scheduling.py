"""Scenarios 3 and 4: priority under load, and delayed jobs against Celery's countdown."""

import time
from datetime import timedelta

from tests import servers as svc

from .measure import Sampler, ms, tree_rss_mib
from .report import percentiles, save
from .stack import running_stack


def submit_bulk(submissions: list[dict]) -> list:
    from jobs import services

    ids = []
    for start in range(0, len(submissions), 1000):
        ids += [job.id for job, _ in services.jobs_submit_many(submissions=submissions[start : start + 1000])]
    return ids


def priority(*, lows: int = 10_000, highs: int = 20, low_ms: int = 10) -> dict:
    with running_stack() as stack:
        from jobs import services
        from jobs.models import Job, JobAttempt

        submit_bulk([{"type": "bench.sleep", "payload": {"ms": low_ms}, "priority": "low"}] * lows)
        stack.worker("priority", concurrency=2)
        svc.wait_for(lambda: Job.objects.filter(status="succeeded").count() >= 200, timeout=120, what="warm-up")
        high_ids = []
        for _ in range(highs):
            high_ids.append(services.job_submit(type="bench.sleep", payload={"ms": low_ms}, priority="high")[0].id)
            time.sleep(0.05)
        svc.wait_for(
            lambda: Job.objects.filter(pk__in=high_ids, status="succeeded").count() == highs,
            timeout=120,
            what="high jobs",
        )
        rows = JobAttempt.objects.filter(job_id__in=high_ids).values_list("started_at", "job__created_at")
        delays = percentiles([(started - created).total_seconds() for started, created in rows])
        left = Job.objects.filter(status="queued").count()
    result = {"lows": lows, "low_ms": low_ms, "highs": highs, "start_delay": delays, "lows_still_waiting": left}
    save(
        "priority",
        result,
        [
            ("backlog", f"{lows:,} low jobs of {low_ms} ms, prefork concurrency 2 ({left:,} still waiting at the end)"),
            (
                f"start delay of {highs} high jobs p50 / p99 / max",
                f"{ms(delays['p50'])} / {ms(delays['p99'])} / {ms(delays['max'])}",
            ),
        ],
    )
    return result


def delays(*, jobs: int = 10_000, spread: float = 60.0, lead: float = 5.0, celery: int = 1) -> dict:
    """`celery=0` measures jobqueue alone, without the Celery countdown baseline."""
    with running_stack() as stack:
        from django.utils import timezone

        from jobs.models import Job, JobAttempt

        worker = stack.worker("delays", concurrency=2)
        stack.spawn("mover", [svc.python(), "manage.py", "run_mover"], {"LOG_LEVEL": "INFO"}).wait_for_output(
            "mover started"
        )
        idle_rss = tree_rss_mib(worker.process.pid)
        start = timezone.now() + timedelta(seconds=lead)
        submit_bulk(
            [
                {"type": "noop", "payload": {}, "run_at": start + timedelta(seconds=spread * i / jobs)}
                for i in range(jobs)
            ]
        )
        held_rss = _rss_before(worker, start.timestamp())
        with Sampler(lambda: tree_rss_mib(worker.process.pid)) as ours_rss:
            svc.wait_for(
                lambda: Job.objects.filter(status="succeeded").count() == jobs,
                timeout=spread + 300,
                what="delayed jobs",
                interval=0.5,
            )
        rows = JobAttempt.objects.values_list("started_at", "job__run_at")
        ours = [(started - run_at).total_seconds() for started, run_at in rows]
        # When the stragglers were due (seconds after the first due time) and how late they started.
        stragglers = sorted(
            [round((run_at - start).total_seconds(), 3), round((started - run_at).total_seconds(), 3)]
            for started, run_at in rows
            if (started - run_at).total_seconds() > 0.1
        )
        # The baseline uses the same queue names: a jobqueue worker left running would take its messages.
        stack.stop_processes()
        theirs, their_rss = _celery_countdown(stack, jobs, spread, lead) if celery else ([], {})
    result = {
        "jobs": jobs,
        "spread_s": spread,
        "jobqueue": {
            **percentiles(ours),
            "early": sum(x < 0 for x in ours),
            "rss_mib_idle": idle_rss,
            "rss_mib_holding": held_rss,
            "rss_mib_max": _max(ours_rss),
            "later_than_100ms": stragglers,
        },
        "celery_countdown": {**percentiles(theirs), "early": sum(x < 0 for x in theirs), **their_rss},
    }
    q, c = result["jobqueue"], result["celery_countdown"]
    rows = [
        ("jobs", f"{jobs:,} scheduled over {spread:.0f} s"),
        ("jobqueue lateness p50 / p99 / max", f"{ms(q['p50'])} / {ms(q['p99'])} / {ms(q['max'])}, early: {q['early']}"),
        ("jobqueue worker RSS idle / holding the jobs / max", _rss_row(q)),
    ]
    if celery:
        rows += [
            (
                "Celery countdown lateness p50 / p99 / max",
                f"{ms(c['p50'])} / {ms(c['p99'])} / {ms(c['max'])}, early: {c['early']}",
            ),
            ("Celery countdown worker RSS idle / holding the jobs / max", _rss_row(c)),
        ]
    save("delays", result, rows)
    return result


def _rss_before(worker, due: float) -> float:
    """Worker node RSS with every job scheduled and none due yet (just before the first is due)."""
    time.sleep(max(0.0, due - 0.5 - time.time()))
    return tree_rss_mib(worker.process.pid)


def _rss_row(measured: dict) -> str:
    return f"{measured['rss_mib_idle']:.0f} / {measured['rss_mib_holding']:.0f} / {measured['rss_mib_max']:.0f} MiB"


def _max(sampler: Sampler) -> float:
    return max((value for _, value in sampler.values), default=0.0)


def _celery_countdown(stack, jobs: int, spread: float, lead: float) -> tuple[list[float], dict]:
    import redis

    from .baseline_app import app

    client = redis.Redis.from_url(stack.redis.url)
    worker = stack.worker(
        "celery-countdown", app="bench.baseline_app", concurrency=2, env={"BENCH_DISABLE_PREFETCH": "0"}
    )
    idle_rss = tree_rss_mib(worker.process.pid)
    base = time.time() + lead
    with app.producer_or_acquire() as producer:
        for i in range(jobs):
            due = base + spread * i / jobs
            app.send_task("bench.stamp", args=[due], countdown=due - time.time(), producer=producer)
    held_rss = _rss_before(worker, base)
    with Sampler(lambda: tree_rss_mib(worker.process.pid)) as rss:
        svc.wait_for(
            lambda: client.llen("bench:lateness") >= jobs, timeout=spread + 300, what="countdown tasks", interval=0.5
        )
    lateness = [float(x) for x in client.lrange("bench:lateness", 0, -1)]
    return lateness, {"rss_mib_idle": idle_rss, "rss_mib_holding": held_rss, "rss_mib_max": _max(rss)}
