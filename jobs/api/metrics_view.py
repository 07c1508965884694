"""GET /metrics of the web app: its own metrics plus the gauges that describe the whole system.

The system gauges (queue depth and latency, dead letters, scheduled jobs, workers online) are
read from Redis and the database at scrape time, by this collector only, which only the web
app's /metrics uses: they are computed once per scrape, never summed over processes.
"""

import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Iterator

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from jobs.adapters import broker, metrics
from jobs.api.throttling import refused_anonymous
from jobs.services import limit_selectors, selectors

log = logging.getLogger("jobqueue.metrics")

# The web app's request metrics, named as django-prometheus named them (dashboards and alerts use them).
REQUESTS = Counter("django_http_requests_total_by_method", "Requests by method.", ["method"])
RESPONSES = Counter("django_http_responses_total_by_status", "Responses by status code.", ["status"])
LATENCY = Histogram(
    "django_http_requests_latency_seconds_by_view_method", "Seconds from request to response.", ["view", "method"]
)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def request_metrics(get_response):
    """Middleware counting every request and response and timing it (first in MIDDLEWARE: it sees all)."""

    def middleware(request):
        started = time.perf_counter()
        response = get_response(request)
        method = request.method if request.method in METHODS else "other"  # labels stay bounded
        view = request.resolver_match.view_name if request.resolver_match else "<unnamed view>"
        REQUESTS.labels(method).inc()
        RESPONSES.labels(str(response.status_code)).inc()
        LATENCY.labels(view, method).observe(time.perf_counter() - started)
        return response

    return middleware


def _broker() -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily("queue_depth", "Messages waiting in each broker queue.", labels=["queue"])
    for queue, length in broker.queue_lengths().items():
        family.add_metric([queue], length)
    yield family
    yield GaugeMetricFamily("dead_letter_size", "Messages in the dead_letter queue.", broker.dead_letter_length())
    workers = len(broker.workers_online())
    yield GaugeMetricFamily("workers_online", "Worker nodes with a recent heartbeat.", workers)


def _database() -> Iterator[GaugeMetricFamily]:
    help_text = "Seconds the oldest queued job of each queue has waited since it was queued."
    family = GaugeMetricFamily("queue_latency_seconds", help_text, labels=["queue"])
    for queue, seconds in selectors.queue_latencies(now=timezone.now()).items():
        family.add_metric([queue], seconds)
    yield family
    yield GaugeMetricFamily("jobs_scheduled", "Jobs waiting for their run_at.", selectors.scheduled_count())
    waiting = GaugeMetricFamily(
        "jobs_waiting_on_limit", "Jobs waiting for a slot of their type's concurrency or rate limit.", labels=["type"]
    )
    for job_type, count in sorted(limit_selectors.waiting_by_type().items()):
        waiting.add_metric([job_type], count)
    yield waiting


class SystemCollector:
    """Gauges read from Redis and the database; a source that does not answer is left out."""

    SOURCES: tuple[tuple[str, Callable[[], Iterator[GaugeMetricFamily]], tuple], ...] = (
        ("broker", _broker, (redis.RedisError, OSError)),
        ("database", _database, (DatabaseError,)),
    )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, source, errors in self.SOURCES:
            try:
                families = list(source())
            except errors as exc:
                log.warning("metrics: %s unavailable, its gauges are left out: %s", name, exc)
                continue
            yield from families


def registry() -> CollectorRegistry:
    """This web process's metrics (or all gunicorn workers' ones in multiprocess mode) plus the system gauges.

    A fresh registry without auto-describe: registering runs no query, scraping runs each once.
    """
    metrics.start_at_zero(metrics.WEB_METRICS)
    combined = CollectorRegistry(auto_describe=False)
    combined.register(SystemCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(combined)
    else:
        combined.register(REGISTRY)  # this process's request metrics, job counters, process stats
    return combined


@require_GET
def metrics_view(request) -> HttpResponse:
    """Open, or behind a bearer token with METRICS_ACCESS=token (Prometheus' `authorization`)."""
    if settings.METRICS_ACCESS == "token":
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.METRICS_TOKEN}".encode()):
            if (throttled := refused_anonymous(request)) is not None:  # guessing the token is throttled
                answer = JsonResponse({"detail": throttled.detail}, status=throttled.status_code)
                answer["Retry-After"] = str(math.ceil(throttled.wait or 1))
                return answer
            answer = JsonResponse({"detail": "metrics need Authorization: Bearer <METRICS_TOKEN>"}, status=401)
            answer["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return answer
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
