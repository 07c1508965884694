"""Scenarios 5, 6 and 7: I/O-bound jobs by pool, growth of the tables, worker memory over many jobs."""

import os
import statistics
import time
from datetime import timedelta

from tests import servers as svc

from .measure import Sampler, ms, tree_rss_mib
from .report import percentiles, save
from .scheduling import submit_bulk
from .stack import running_stack
from .submit_api import start_web, token
from .throughput import drain_jobqueue


def slow_sink(delay: float) -> tuple[svc.Process, int]:
    """The loopback SMTP sink (bench/smtp_sink.py) in its own process, and its port."""
    port = svc.free_port()
    sink = svc.Process(
        "bench-smtp-sink", [svc.python(), "-m", "bench.smtp_sink", str(port), str(delay)], dict(os.environ)
    )
    sink.wait_for_output("listening on", timeout=30)
    return sink, port


def io_bound(*, emails: int = 2000, delay_ms: int = 50, threads: int = 50, nodes: int = 2) -> dict:
    """Prefork concurrency 2 against `nodes` worker nodes with a threads pool of `threads` each
    (one per core: a threads pool shares one interpreter, so one node uses one core)."""
    smtp, smtp_port = slow_sink(delay_ms / 1000)
    rates = {}
    threaded_label = f"{nodes} x threads {threads}"
    try:
        with running_stack() as stack:
            from jobs.models import Job

            env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port)}
            for label, pool, concurrency, count in (
                ("prefork 2", "prefork", 2, 1),
                (threaded_label, "threads", threads, nodes),
            ):
                Job.objects.all().delete()
                for n in range(count):
                    stack.worker(f"{pool}-{n}", pool=pool, concurrency=concurrency, env=env)
                # Timed from the submission, every node already waiting: none gets a head start.
                started = time.monotonic()
                payload = {"to": "someone@example.com", "subject": "bench", "body": "hello"}
                submit_bulk([{"type": "email", "payload": payload}] * emails)
                svc.wait_for(
                    lambda: Job.objects.filter(status="succeeded").count() == emails,
                    timeout=1800,
                    what="emails",
                    interval=0.2,
                )
                rates[label] = emails / (time.monotonic() - started)
                stack.stop_processes()
    finally:
        smtp.stop()
    prefork, threaded = rates["prefork 2"], rates[threaded_label]
    result = {"emails": emails, "smtp_delay_ms": delay_ms, "emails_per_s": rates, "ratio": threaded / prefork}
    save(
        "io-bound",
        result,
        [
            ("jobs", f"{emails:,} email jobs to a loopback SMTP sink answering after {delay_ms} ms"),
            ("prefork concurrency 2", f"{prefork:.1f} emails/s"),
            (
                f"{nodes} worker nodes, threads pool concurrency {threads} each (README's I/O setup)",
                f"{threaded:.1f} emails/s ({result['ratio']:.1f}x)",
            ),
        ],
    )
    return result


def _store_finished(count: int) -> None:
    """Insert `count` finished jobs straight in SQL, as if they had run over the last days."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (id, type, payload, priority, status, attempts, serial, max_retries,
                result, error_type, error_message, error_traceback, reason, progress, progress_message, worker,
                created_at, updated_at, started_at, finished_at)
            SELECT gen_random_uuid(), 'noop', '{}'::jsonb, 'medium', 'succeeded', 1, 1, 0, NULL, '', '', '', '',
                100, '', 'bench@host', t, t, t, t
            FROM (SELECT now() - (n || ' seconds')::interval - interval '1 day' AS t
                  FROM generate_series(1, %s) AS n) AS times
            """,
            [count],
        )


def _status_p99(address: str, key: str, ids: list[str], requests: int = 2000) -> dict:
    import http.client

    host, port = address.split(":")
    latencies = []
    for index in range(requests):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        started = time.perf_counter()
        conn.request("GET", f"/job-status/{ids[index % len(ids)]}", headers={"Authorization": f"Token {key}"})
        assert conn.getresponse().status == 200
        latencies.append(time.perf_counter() - started)
        conn.close()
    return percentiles(latencies)


def growth(*, sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000), jobs: int = 5_000) -> dict:
    rows, result = [], {}
    with running_stack() as stack:
        from django.utils import timezone

        from jobs import services
        from jobs.models import Job

        address, key = start_web(stack), token()
        stored = 0
        for size in sizes:
            _store_finished(size - stored)
            stored = size
            rate = drain_jobqueue(stack, jobs, 2)
            sample = [str(pk) for pk in Job.objects.order_by("?").values_list("pk", flat=True)[:200]]
            status = _status_p99(address, key, sample)
            result[size] = {"jobs_per_s": rate, "status": status}
            rows.append(
                (
                    f"{size:,} finished jobs stored",
                    f"{rate:.0f} jobs/s; GET /job-status p50 {ms(status['p50'])}, p99 {ms(status['p99'])}",
                )
            )
        started = time.monotonic()
        purged = services.jobs_purge_finished(finished_before=timezone.now() - timedelta(hours=1))
        seconds = time.monotonic() - started
    result["cleanup"] = {"deleted": purged, "seconds": seconds}
    rows.append(("retention cleanup (batches of 5,000)", f"{purged:,} jobs deleted in {seconds:.1f} s"))
    first, last = result[sizes[0]], result[sizes[-1]]
    change = last["jobs_per_s"] / first["jobs_per_s"] - 1
    status_change = last["status"]["p99"] / first["status"]["p99"] - 1
    save(
        "growth",
        result,
        rows,
        headline=f"from {sizes[0]:,} to {sizes[-1]:,} stored jobs: throughput "
        f"{change:+.0%}, status p99 {status_change:+.0%}",
    )
    return result


def memory(*, jobs: int = 100_000) -> dict:
    with running_stack() as stack:
        from jobs.models import Job

        submit_bulk([{"type": "noop", "payload": {}}] * jobs)
        worker = stack.worker("memory", concurrency=2)
        with Sampler(lambda: tree_rss_mib(worker.process.pid), interval=1.0) as rss:
            svc.wait_for(
                lambda: Job.objects.filter(status="succeeded").count() == jobs, timeout=3600, what="jobs", interval=1.0
            )
    values = [value for _, value in rss.values]
    warm = values[max(1, len(values) // 10)]
    end = statistics.median(values[-5:])
    result = {
        "jobs": jobs,
        "rss_mib_after_warmup": warm,
        "rss_mib_at_end": end,
        "growth": end / warm - 1,
        "samples": rss.values,
    }
    save(
        "memory",
        result,
        [
            ("jobs", f"{jobs:,} noop, prefork concurrency 2"),
            (
                "worker node RSS after warm-up (10%) / at the end",
                f"{warm:.0f} MiB / {end:.0f} MiB ({result['growth']:+.1%})",
            ),
        ],
    )
    return result
