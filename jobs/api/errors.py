"""One place that turns errors into 4xx JSON answers naming the field and the problem."""

import logging
import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.api.outages import unavailable_answer, unavailable_response
from jobs.api.throttling import refused_anonymous
from jobs.rules.exceptions import (
    IdempotencyKeyReused,
    InternalJobType,
    InvalidTransition,
    JobNotFound,
    JobQueueError,
    ScheduleNotFound,
    UniqueKeyContended,
    UnknownJobType,
    UnknownQueue,
    error_detail,
)
from jobs.services.schedules import ScheduleReadOnly

log = logging.getLogger("jobqueue.api")

STATUS_BY_ERROR: list[tuple[type[JobQueueError], int]] = [
    (JobNotFound, status.HTTP_404_NOT_FOUND),
    (UnknownQueue, status.HTTP_404_NOT_FOUND),
    (ScheduleNotFound, status.HTTP_404_NOT_FOUND),
    (ScheduleReadOnly, status.HTTP_409_CONFLICT),
    (InternalJobType, status.HTTP_403_FORBIDDEN),
    (UnknownJobType, status.HTTP_400_BAD_REQUEST),
    (InvalidTransition, status.HTTP_409_CONFLICT),
    (IdempotencyKeyReused, status.HTTP_422_UNPROCESSABLE_ENTITY),
    (UniqueKeyContended, status.HTTP_409_CONFLICT),
]


def exception_handler(exc, context):
    if isinstance(exc, NotAuthenticated | AuthenticationFailed):
        exc = refused_anonymous(context["request"], context["view"]) or exc  # guessing tokens is throttled
    if isinstance(exc, DataError):
        # A value the database cannot hold that no check caught first. Its message is the database's
        # own (statement text, internals): it is logged, not echoed.
        log.warning("a value could not be stored: %s", exc)
        detail = "a value could not be stored: text or a number the database cannot hold"
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    if (answer := unavailable_answer(exc)) is not None:
        return Response(answer[0], status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=answer[1])
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"request body too large: the limit is {limit} bytes (JOB_MAX_REQUEST_BYTES)"
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, JobQueueError):
        code = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST)
        return Response(error_detail(exc), status=code)
    return drf_exception_handler(exc, context)


def server_error(request):
    """handler500: an error raised outside a view (a middleware reading the session, say) that
    comes from an unreachable service is a 503 too; anything else is Django's 500 page."""
    response = unavailable_response(sys.exc_info()[1])
    return response if response is not None else defaults.server_error(request)
