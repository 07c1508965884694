"""Thin views: validate the shape, call a service or selector, serialize."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .serializers import JobStatusSerializer, SubmitJobSerializer, SubmitJobsSerializer, SubmittedJobSerializer


class SubmitJobView(APIView):
    @extend_schema(request=SubmitJobSerializer, responses={200: JobStatusSerializer, 201: JobStatusSerializer})
    def post(self, request: Request) -> Response:
        submission = SubmitJobSerializer(data=request.data)
        submission.is_valid(raise_exception=True)
        fields = dict(submission.validated_data)
        header_key = request.headers.get("Idempotency-Key")
        if header_key and fields.get("idempotency_key") and header_key != fields["idempotency_key"]:
            raise ValidationError({"idempotency_key": ["differs from the Idempotency-Key header"]})
        if header_key and len(header_key) > 255:
            raise ValidationError({"Idempotency-Key": ["must be at most 255 characters"]})
        fields["idempotency_key"] = fields.get("idempotency_key") or header_key or None
        job, created = services.job_submit(owner=request.user, **fields)
        body = JobStatusSerializer(job).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SubmitJobsView(APIView):
    """Up to JOB_BULK_MAX jobs in one request, validated like single submissions; all or nothing."""

    @extend_schema(
        request=SubmitJobsSerializer,
        responses={200: SubmittedJobSerializer(many=True), 201: SubmittedJobSerializer(many=True)},
    )
    def post(self, request: Request) -> Response:
        submission = SubmitJobsSerializer(data=request.data)
        submission.is_valid(raise_exception=True)
        results = services.jobs_submit_many(submissions=submission.validated_data["jobs"], owner=request.user)
        body = {"jobs": [{**SubmittedJobSerializer(job).data, "created": created} for job, created in results]}
        created = any(created for _, created in results)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class JobStatusView(APIView):
    @extend_schema(responses=JobStatusSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.job_for_user(job_id=job_id, user=request.user)
        return Response(JobStatusSerializer(job).data)
