"""The services a request stands on being away: which one an error names, and the 503 that says so.

With PostgreSQL or Redis unreachable (or PostgreSQL read-only) a client gets `503` JSON naming the service and a
`Retry-After`, never an HTML page or a `500`: the API's exception handler, a middleware for
every other view, and the `handler500` for errors raised outside views all answer through here.
"""

import logging

from django.conf import settings
from django.http import JsonResponse
from django.utils.deprecation import MiddlewareMixin

from jobs.adapters.unavailable import broker_unavailable, database_unavailable

log = logging.getLogger("jobqueue.api")


def unavailable_answer(exc: BaseException | None) -> tuple[dict, dict] | None:
    """The body and headers of the 503 if `exc` says the database or the broker cannot serve
    now (`jobs.adapters.unavailable`: down, unreachable, or a read-only node after a failover), else None."""
    if database_unavailable(exc):
        service = "database"
    elif broker_unavailable(exc):
        service = "broker"
    else:
        return None
    seconds = settings.API_RETRY_AFTER_SECONDS
    log.warning("answering 503: the %s is unavailable: %s: %s", service, type(exc).__name__, exc)
    body = {"detail": f"the {service} is unavailable; try again in {seconds} seconds", "service": service}
    return body, {"Retry-After": str(seconds)}


def unavailable_response(exc: BaseException | None) -> JsonResponse | None:
    answer = unavailable_answer(exc)
    return None if answer is None else JsonResponse(answer[0], status=503, headers=answer[1])


class ServiceUnavailableMiddleware(MiddlewareMixin):
    """Any view (the admin, the metrics, the health check) that fails on an unreachable service answers 503 JSON."""

    def process_exception(self, request, exception):
        return unavailable_response(exception)
