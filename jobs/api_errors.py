"""One place that turns errors into 4xx JSON answers naming the field and the problem."""

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import (
    InvalidBulkSubmission,
    InvalidTransition,
    JobNotFound,
    JobQueueError,
    UnknownJobType,
    UnknownQueue,
    error_detail,
)

STATUS_BY_ERROR: list[tuple[type[JobQueueError], int]] = [
    (JobNotFound, status.HTTP_404_NOT_FOUND),
    (UnknownQueue, status.HTTP_404_NOT_FOUND),
    (UnknownJobType, status.HTTP_400_BAD_REQUEST),
    (InvalidTransition, status.HTTP_409_CONFLICT),
]


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"request body is too large: {exc}"}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, JobQueueError):
        code = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, InvalidBulkSubmission):
            return Response({"jobs": exc.details}, status=code)
        return Response(error_detail(exc), status=code)
    return drf_exception_handler(exc, context)
