"""The staff-only management API under /api/: thin views over the selectors and services."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import history, selectors, services
from .permissions import CHANGE_JOBS, CHANGE_QUEUES, DELETE_JOBS, VIEW_JOBS, VIEW_QUEUES, OperatorPermission
from .serializers import (
    DeadLetterFilterSerializer,
    ErrorSerializer,
    JobDetailSerializer,
    JobFilterSerializer,
    JobRetrySerializer,
    JobSummarySerializer,
    PurgedSerializer,
    PurgeSerializer,
    QueueResumedSerializer,
    QueueSerializer,
    RetriedSerializer,
    StatsSerializer,
)
from .states import QUEUES, Status

BAD_REQUEST = OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input: each bad field names its problem.")
DENIED = {
    401: OpenApiResponse(ErrorSerializer, description="No or invalid credentials."),
    403: OpenApiResponse(ErrorSerializer, description="Not a staff user."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such job.")}
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="The job's status does not allow this.")}
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
QUEUE = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(QUEUES), description="The queue.")


def _actor(request: Request) -> str:
    return f"api:{request.user.get_username()}"


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class JobPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class StaffView(APIView):
    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_JOBS, "POST": CHANGE_JOBS, "DELETE": DELETE_JOBS}


@extend_schema(
    tags=["management"],
    parameters=[JobFilterSerializer],
    responses={200: JobSummarySerializer(many=True), 400: BAD_REQUEST, **DENIED},
)
class JobListView(ListAPIView):
    """Jobs, newest first, filtered by status, type, priority, creation time and text."""

    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_JOBS}
    serializer_class = JobSummarySerializer
    pagination_class = JobPagination

    def get_queryset(self):
        return selectors.jobs_filtered(**_validated(JobFilterSerializer, self.request.query_params))


class JobDetailView(StaffView):
    @extend_schema(
        tags=["management"], parameters=[JOB_ID], responses={200: JobDetailSerializer, **DENIED, **NOT_FOUND}
    )
    def get(self, request: Request, job_id: str) -> Response:
        """One job with payload, result, error, traceback and attempt history."""
        return Response(JobDetailSerializer(selectors.job_by_id(job_id=job_id)).data)

    @extend_schema(tags=["management"], parameters=[JOB_ID], responses={204: None, **DENIED, **NOT_FOUND, **CONFLICT})
    def delete(self, request: Request, job_id: str) -> Response:
        """Delete a job and its history; a running job cannot be deleted (409)."""
        job = selectors.job_by_id(job_id=job_id)
        services.job_delete(job_id=job_id)
        history.record(user=request.user, obj=job, message="Deleted through the API", flag=history.DELETION)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobRetryView(StaffView):
    @extend_schema(
        tags=["management"],
        parameters=[JOB_ID],
        request=JobRetrySerializer,
        responses={200: JobDetailSerializer, 400: BAD_REQUEST, **DENIED, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Run a dead job again under the same id, optionally with a corrected payload."""
        body = _validated(JobRetrySerializer, request.data)
        job = services.job_retry(job_id=job_id, payload=body.get("payload"))
        edited = " with an edited payload" if "payload" in body else ""
        history.record(user=request.user, obj=job, message=f"Retried through the API{edited}")
        return Response(JobDetailSerializer(job).data)


class JobResubmitView(StaffView):
    @extend_schema(
        tags=["management"],
        parameters=[JOB_ID],
        request=JobRetrySerializer,
        responses={201: JobDetailSerializer, 400: BAD_REQUEST, **DENIED, **NOT_FOUND},
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Submit a copy of a job (same type, payload unless given, options) as a new job."""
        body = _validated(JobRetrySerializer, request.data)
        job = services.job_resubmit(job_id=job_id, payload=body.get("payload"))
        history.record(user=request.user, obj=job.resubmitted_from, message=f"Resubmitted through the API as {job.pk}")
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class JobCancelView(StaffView):
    @extend_schema(
        tags=["management"],
        request=None,
        parameters=[JOB_ID],
        responses={200: JobDetailSerializer, **DENIED, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Cancel a scheduled, queued or retrying job."""
        job = services.job_cancel(job_id=job_id)
        history.record(user=request.user, obj=job, message="Cancelled through the API")
        return Response(JobDetailSerializer(job).data)


@extend_schema(
    tags=["management"],
    parameters=[DeadLetterFilterSerializer],
    responses={200: JobSummarySerializer(many=True), 400: BAD_REQUEST, **DENIED},
)
class DeadLetterListView(ListAPIView):
    """Dead jobs, most recently dead first, with their reason and error."""

    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_JOBS}
    serializer_class = JobSummarySerializer
    pagination_class = JobPagination

    def get_queryset(self):
        filters = _validated(DeadLetterFilterSerializer, self.request.query_params)
        return selectors.jobs_filtered(status=Status.DEAD, **filters).order_by("-finished_at")


class DeadLetterRetryAllView(StaffView):
    @extend_schema(tags=["management"], request=None, responses={200: RetriedSerializer, **DENIED})
    def post(self, request: Request) -> Response:
        """Retry every dead job under its own id."""
        retried = services.jobs_retry_dead()
        history.record_jobs(user=request.user, ids=retried, message="Retried through the API (all dead)")
        return Response({"retried": len(retried)})


class DeadLetterPurgeView(StaffView):
    required_permissions = {"POST": DELETE_JOBS}

    @extend_schema(
        tags=["management"],
        request=PurgeSerializer,
        responses={200: PurgedSerializer, 400: BAD_REQUEST, **DENIED},
    )
    def post(self, request: Request) -> Response:
        """Delete dead jobs, all or those dead for longer than `older_than_days`."""
        days = _validated(PurgeSerializer, request.data).get("older_than_days")
        before = timezone.now() - timedelta(days=days) if days is not None else None
        purged = services.jobs_purge_dead(finished_before=before)
        history.record_jobs(user=request.user, ids=purged, message="Purged through the API", flag=history.DELETION)
        return Response({"purged": len(purged)})


def _queue(name: str) -> dict:
    return next(queue for queue in selectors.queue_overview() if queue["name"] == name)


class QueueListView(StaffView):
    required_permissions = {"GET": VIEW_QUEUES, "POST": CHANGE_QUEUES}

    @extend_schema(tags=["management"], responses={200: QueueSerializer(many=True), **DENIED})
    def get(self, request: Request) -> Response:
        """Each queue with paused state, depth in Redis, queued and running jobs, and latency."""
        return Response(QueueSerializer(selectors.queue_overview(), many=True).data)


QUEUE_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such queue.")}


class QueuePauseView(StaffView):
    required_permissions = {"GET": VIEW_QUEUES, "POST": CHANGE_QUEUES}

    @extend_schema(
        tags=["management"],
        request=None,
        parameters=[QUEUE],
        responses={200: QueueSerializer, **DENIED, **QUEUE_NOT_FOUND},
    )
    def post(self, request: Request, name: str) -> Response:
        """Pause a queue: nothing of it runs until it is resumed, across restarts."""
        state = services.queue_pause(queue=name, by=_actor(request))
        history.record(user=request.user, obj=state, message="Paused through the API")
        return Response(QueueSerializer(_queue(name)).data)


class QueueResumeView(StaffView):
    required_permissions = {"GET": VIEW_QUEUES, "POST": CHANGE_QUEUES}

    @extend_schema(
        tags=["management"],
        request=None,
        parameters=[QUEUE],
        responses={200: QueueResumedSerializer, **DENIED, **QUEUE_NOT_FOUND},
    )
    def post(self, request: Request, name: str) -> Response:
        """Resume a paused queue and publish its queued jobs, oldest first."""
        state, published = services.queue_resume(queue=name, by=_actor(request))
        if state.pk is not None:
            history.record(user=request.user, obj=state, message="Resumed through the API")
        return Response(QueueResumedSerializer({**_queue(name), "published": published}).data)


class StatsView(StaffView):
    @extend_schema(tags=["management"], responses={200: StatsSerializer, **DENIED})
    def get(self, request: Request) -> Response:
        """Jobs per status, queues, dead letters, workers online and the last hour's throughput."""
        return Response(StatsSerializer(selectors.job_stats()).data)
