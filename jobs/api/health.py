"""GET /healthz: 200 when the database and the broker answer, 503 naming what failed.

`?workers=1` also needs at least one worker node with a recent heartbeat. Each check is bounded by
HEALTHZ_TIMEOUT (connect and query timeouts), so a hung dependency fails its check instead of
hanging the probe."""

import redis
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from jobs.adapters import broker, dispatch
from jobs.adapters.store import store


def _check_database() -> str:
    store().ping(timeout=settings.HEALTHZ_TIMEOUT)
    return "ok"


def _redis() -> redis.Redis:
    timeout = settings.HEALTHZ_TIMEOUT
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=timeout, socket_timeout=timeout)


def _check_broker() -> str:
    with _redis() as client:
        client.ping()
    return "ok"


def _check_workers() -> str:
    with _redis() as client:
        online = broker.workers_online(client)
    if not online:
        stale = settings.JOB_WORKER_HEARTBEAT_SECONDS * 3
        raise LookupError(f"no worker node sent a heartbeat in the last {stale:g}s")
    return f"ok: {len(online)} online"


def _check_dispatch() -> str:
    """A publish of this process failed for a bug, not for the broker: jobs get no messages."""
    problem = dispatch.publish_problem()
    if problem:
        raise RuntimeError(f"publishing jobs fails: {problem}")
    return "ok"


CHECKS = {"database": _check_database, "broker": _check_broker, "dispatch": _check_dispatch}


@require_GET
def healthz(request):
    checks = dict(CHECKS)
    if request.GET.get("workers") in {"1", "true", "yes"}:
        checks["workers"] = _check_workers
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # any failure of a dependency is a failed check, not a 500
            results[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    failed = [name for name, value in results.items() if not value.startswith("ok")]
    body = {"status": "unavailable" if failed else "ok", "checks": results}
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200)
