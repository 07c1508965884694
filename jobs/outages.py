"""The services a request stands on being away: which one an error names, and the 503 that says so.

With PostgreSQL or Redis unreachable a client gets `503` JSON naming the service and a
`Retry-After`, never an HTML page or a `500`: the API's exception handler, a middleware for
every other view, and the `handler500` for errors raised outside views all answer through here.
"""

import logging

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger("jobqueue.api")

# OperationalError covers a refused or lost connection, a server shutting down and a statement
# timeout; InterfaceError a connection already closed.
DATABASE_ERRORS = (OperationalError, InterfaceError)
BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerError)


def unavailable_service(exc: BaseException | None) -> str | None:
    """ "database" or "broker" if `exc` says that service cannot be reached, else None."""
    if isinstance(exc, DATABASE_ERRORS):
        return "database"
    if isinstance(exc, BROKER_ERRORS):
        return "broker"
    return None


def unavailable_answer(service: str, exc: BaseException) -> tuple[dict, dict]:
    """The body and headers of the 503."""
    seconds = settings.API_RETRY_AFTER_SECONDS
    log.warning("answering 503: the %s is unavailable: %s: %s", service, type(exc).__name__, exc)
    body = {"detail": f"the {service} is unavailable; try again in {seconds} seconds", "service": service}
    return body, {"Retry-After": str(seconds)}


def unavailable_response(service: str, exc: BaseException) -> JsonResponse:
    body, headers = unavailable_answer(service, exc)
    return JsonResponse(body, status=503, headers=headers)


class ServiceUnavailableMiddleware:
    """Any view (the admin, the metrics, the health check) that fails on an unreachable service answers 503 JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        service = unavailable_service(exception)
        return None if service is None else unavailable_response(service, exception)
