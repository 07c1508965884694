"""Thin views: validate the shape, call a service or selector, serialize."""

from functools import cache
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import services
from jobs.api.pagination import JobPagination
from jobs.api.serializers import (
    ErrorSerializer,
    JobFilterSerializer,
    JobStatusSerializer,
    JobSummarySerializer,
    SubmitAnswerSerializer,
    SubmitJobsAnswerSerializer,
    SubmitJobSerializer,
    SubmitJobsSerializer,
    SubmittedJobSerializer,
    validated,
)
from jobs.rules.permissions import may_cancel, may_see_tracebacks
from jobs.services import history, selectors

UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description="No or invalid credentials.")


@cache
def _answer_serializer(serializer_class: type) -> Any:
    """One answering serializer per class and process. A ModelSerializer builds its fields from the
    model the first time an instance is used, which costs more than the rest of a submit; answering
    only reads, so one instance serves them all."""
    return serializer_class()


def represent(serializer_class: type, instance: Any) -> dict:
    return _answer_serializer(serializer_class).to_representation(instance)


def for_client(body: dict, request: Request) -> dict:
    """A job as its client sees it: the traceback only for staff (permissions.may_see_tracebacks)."""
    if body.get("error") and not may_see_tracebacks(request.user):
        body["error"] = {key: value for key, value in body["error"].items() if key != "traceback"}
    return body


KEY_REUSED = OpenApiResponse(OpenApiTypes.OBJECT, description="The idempotency key was used for other parameters.")
NOT_YOURS = OpenApiResponse(ErrorSerializer, description="No such job (or another client's).")
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class SubmitJobView(APIView):
    @extend_schema(
        tags=["jobs"],
        request=SubmitJobSerializer,
        parameters=[
            OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, description="Submit once.")
        ],
        responses={
            200: OpenApiResponse(
                SubmitAnswerSerializer,
                description="The job submitted earlier with this idempotency key, or the job that holds this "
                "submission's unique key; `duplicate` says which.",
            ),
            201: OpenApiResponse(SubmitAnswerSerializer, description="The new job (`duplicate` is null)."),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid submission, naming each bad field."),
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ErrorSerializer, description="An internal type (`django_task`): code submits it."),
            413: OpenApiResponse(ErrorSerializer, description="Request body too large."),
            422: KEY_REUSED,
        },
    )
    def post(self, request: Request) -> Response:
        """Submit a job; it runs as soon as a worker is free, or at `run_at` / after `delay`."""
        fields = validated(SubmitJobSerializer, request.data)
        header_key = request.headers.get("Idempotency-Key")
        if header_key and fields.get("idempotency_key") and header_key != fields["idempotency_key"]:
            raise ValidationError({"idempotency_key": ["differs from the Idempotency-Key header"]})
        if header_key and len(header_key) > 255:
            raise ValidationError({"Idempotency-Key": ["must be at most 255 characters"]})
        fields["idempotency_key"] = fields.get("idempotency_key") or header_key or None
        job, created = services.job_submit(owner=request.user, actor=request.user, **fields)
        body = represent(JobStatusSerializer, selectors.as_answered(job))
        body["duplicate"] = services.answered_with(created=created, job=job, idempotency_key=fields["idempotency_key"])
        return Response(for_client(body, request), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SubmitJobsView(APIView):
    """Up to JOB_BULK_MAX jobs in one request, validated like single submissions; all or nothing."""

    @extend_schema(
        request=SubmitJobsSerializer,
        responses={200: SubmitJobsAnswerSerializer, 201: SubmitJobsAnswerSerializer, 422: KEY_REUSED},
    )
    def post(self, request: Request) -> Response:
        submissions = validated(SubmitJobsSerializer, request.data)["jobs"]
        results = services.jobs_submit_many(submissions=submissions, owner=request.user, actor=request.user)
        body = {
            "jobs": [
                {
                    **represent(SubmittedJobSerializer, job),
                    "created": created,
                    "duplicate": services.answered_with(
                        created=created, job=job, idempotency_key=item.get("idempotency_key")
                    ),
                }
                for item, (job, created) in zip(submissions, results, strict=True)
            ]
        }
        created = any(created for _, created in results)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class JobStatusView(APIView):
    @extend_schema(
        tags=["jobs"],
        parameters=[JOB_ID],
        responses={200: JobStatusSerializer, 401: UNAUTHENTICATED, 404: NOT_YOURS},
    )
    def get(self, request: Request, job_id: str) -> Response:
        """A job's status, result, error and attempt history."""
        job = selectors.job_for_user(job_id=job_id, user=request.user)
        return Response(for_client(represent(JobStatusSerializer, job), request))


@extend_schema(
    tags=["jobs"],
    parameters=[JobFilterSerializer],
    responses={
        200: JobSummarySerializer(many=True),
        400: OpenApiResponse(OpenApiTypes.OBJECT, description="A bad filter, named."),
        401: UNAUTHENTICATED,
    },
)
class ClientJobListView(ListAPIView):
    """Your own jobs (those you submitted), newest first, filtered like the staff list."""

    serializer_class = JobSummarySerializer
    pagination_class = JobPagination

    def get_queryset(self):
        filters = validated(JobFilterSerializer, self.request.query_params)
        return selectors.jobs_filtered(**filters).filter(owner=self.request.user)


class JobArtifactView(APIView):
    @extend_schema(
        tags=["jobs"],
        parameters=[JOB_ID, OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file as an attachment, with the type the job gave it."
            ),
            401: UNAUTHENTICATED,
            404: NOT_YOURS,
        },
    )
    def get(self, request: Request, job_id: str, name: str) -> HttpResponse:
        """Download a file a job made (a `report` job's CSV: its result's `download`); for the job's
        owner and staff who may view jobs."""
        artifact = selectors.job_artifact(job_id=job_id, name=name, user=request.user)
        response = HttpResponse(bytes(artifact.content), content_type=artifact.content_type)
        response["Content-Disposition"] = f'attachment; filename="{artifact.name}"'
        response["Cache-Control"] = "private, no-store"
        return response


class ClientJobCancelView(APIView):
    @extend_schema(
        tags=["jobs"],
        request=None,
        parameters=[JOB_ID],
        responses={
            200: JobStatusSerializer,
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ErrorSerializer, description="Staff who may view the job but not change jobs."),
            404: NOT_YOURS,
            409: OpenApiResponse(ErrorSerializer, description="The job already finished (succeeded, dead, cancelled)."),
        },
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Cancel one of your jobs that has not finished. One that has not started never starts; a
        running one is `cancelled` at once, its handler is told (ctx.check() raises JobCancelled) and
        its process ended after JOB_CANCEL_GRACE; its attempt records who cancelled it. Staff who may
        view and change jobs cancel any job here too. A finished job answers 409."""
        job = selectors.job_for_user(job_id=job_id, user=request.user)
        if not may_cancel(request.user, job):
            raise PermissionDenied("cancelling another user's job needs the permission jobs.change_job")
        whose = "its owner" if job.owner_id == request.user.pk else "staff"
        job = services.job_cancel(job_id=job_id, actor=request.user)
        history.record(user=request.user, obj=job, message=f"Cancelled by {whose} through the API")
        return Response(for_client(represent(JobStatusSerializer, job), request))
