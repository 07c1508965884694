"""The staff-only management API under /api/: thin views over the selectors and services."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import services
from jobs.api.pagination import JobPagination
from jobs.api.serializers import (
    DeadLetterFilterSerializer,
    ErrorSerializer,
    JobDetailSerializer,
    JobFilterSerializer,
    JobRetrySerializer,
    JobSummarySerializer,
    LimitChangeSerializer,
    LimitSerializer,
    PurgedSerializer,
    PurgeSerializer,
    QueueResumedSerializer,
    QueueSerializer,
    RetriedSerializer,
    StatsSerializer,
    validated,
)
from jobs.rules.permissions import CHANGE_JOBS, CHANGE_QUEUES, DELETE_JOBS, VIEW_JOBS, VIEW_QUEUES, OperatorPermission
from jobs.rules.states import QUEUES, Status
from jobs.services import history, limit_selectors, selectors

BAD_REQUEST = OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input: each bad field names its problem.")
DENIED = {
    401: OpenApiResponse(ErrorSerializer, description="No or invalid credentials."),
    403: OpenApiResponse(ErrorSerializer, description="Not a staff user."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such job.")}
QUEUE_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such queue.")}
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="The job's status does not allow this.")}
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
LIMIT_TYPE = OpenApiParameter("type", OpenApiTypes.STR, OpenApiParameter.PATH, description="The job type.")
QUEUE = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(QUEUES), description="The queue.")


def management_schema(responses: dict, **kwargs: Any) -> Callable:
    """extend_schema under the management tag, adding the 401 and 403 every view here may answer."""
    return extend_schema(tags=["management"], responses=dict(sorted({**responses, **DENIED}.items())), **kwargs)


def _actor(request: Request) -> str:
    return f"api:{request.user.get_username()}"


def _queue(name: str) -> dict:
    return next(queue for queue in selectors.queue_overview() if queue["name"] == name)


class StaffView(APIView):
    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_JOBS, "POST": CHANGE_JOBS, "DELETE": DELETE_JOBS}


class QueueView(StaffView):
    required_permissions = {"GET": VIEW_QUEUES, "POST": CHANGE_QUEUES}


class StaffJobListView(ListAPIView):
    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_JOBS}
    serializer_class = JobSummarySerializer
    pagination_class = JobPagination


@management_schema({200: JobSummarySerializer(many=True), 400: BAD_REQUEST}, parameters=[JobFilterSerializer])
class JobListView(StaffJobListView):
    """Jobs, newest first, filtered by status, type, priority, creation time and text."""

    def get_queryset(self):
        return selectors.jobs_filtered(**validated(JobFilterSerializer, self.request.query_params))


class JobDetailView(StaffView):
    @management_schema({200: JobDetailSerializer, **NOT_FOUND}, parameters=[JOB_ID])
    def get(self, request: Request, job_id: str) -> Response:
        """One job with payload, result, error, traceback and attempt history."""
        return Response(JobDetailSerializer(selectors.job_by_id(job_id=job_id)).data)

    @management_schema({204: None, **NOT_FOUND, **CONFLICT}, parameters=[JOB_ID])
    def delete(self, request: Request, job_id: str) -> Response:
        """Delete a job and its history; a running job cannot be deleted (409)."""
        job = selectors.job_by_id(job_id=job_id)
        services.job_delete(job_id=job_id)
        history.record(user=request.user, obj=job, message="Deleted through the API", flag=history.DELETION)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobRetryView(StaffView):
    @management_schema(
        {200: JobDetailSerializer, 400: BAD_REQUEST, **NOT_FOUND, **CONFLICT},
        parameters=[JOB_ID],
        request=JobRetrySerializer,
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Run a dead job again under the same id, optionally with a corrected payload."""
        body = validated(JobRetrySerializer, request.data)
        job = services.job_retry(job_id=job_id, payload=body.get("payload"), actor=request.user)
        edited = " with an edited payload" if "payload" in body else ""
        history.record(user=request.user, obj=job, message=f"Retried through the API{edited}")
        return Response(JobDetailSerializer(job).data)


class JobResubmitView(StaffView):
    @management_schema(
        {201: JobDetailSerializer, 400: BAD_REQUEST, **NOT_FOUND}, parameters=[JOB_ID], request=JobRetrySerializer
    )
    def post(self, request: Request, job_id: str) -> Response:
        """Submit a copy of a job (same type, payload unless given, options) as a new job."""
        body = validated(JobRetrySerializer, request.data)
        job = services.job_resubmit(job_id=job_id, payload=body.get("payload"), actor=request.user)
        history.record(user=request.user, obj=job.resubmitted_from, message=f"Resubmitted through the API as {job.pk}")
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


FINISHED_CONFLICT = {
    409: OpenApiResponse(ErrorSerializer, description="The job already finished (succeeded, dead or cancelled).")
}


class JobCancelView(StaffView):
    @management_schema({200: JobDetailSerializer, **NOT_FOUND, **FINISHED_CONFLICT}, request=None, parameters=[JOB_ID])
    def post(self, request: Request, job_id: str) -> Response:
        """Cancel a job that has not finished: one that has not started never starts; a running one is
        `cancelled` at once and its handler stopped (told, then its process ended after
        JOB_CANCEL_GRACE), its attempt naming who cancelled it. A finished job answers 409."""
        job = services.job_cancel(job_id=job_id, actor=request.user)
        history.record(user=request.user, obj=job, message="Cancelled through the API")
        return Response(JobDetailSerializer(job).data)


class JobRunNowView(StaffView):
    @management_schema({200: JobDetailSerializer, **NOT_FOUND, **CONFLICT}, request=None, parameters=[JOB_ID])
    def post(self, request: Request, job_id: str) -> Response:
        """Queue a scheduled (or retrying) job now instead of at its run_at."""
        job = services.job_run_now(job_id=job_id)
        history.record(user=request.user, obj=job, message="Queued now through the API")
        return Response(JobDetailSerializer(job).data)


@management_schema({200: JobSummarySerializer(many=True), 400: BAD_REQUEST}, parameters=[DeadLetterFilterSerializer])
class DeadLetterListView(StaffJobListView):
    """Dead jobs, most recently dead first, with their reason and error."""

    def get_queryset(self):
        filters = validated(DeadLetterFilterSerializer, self.request.query_params)
        return selectors.jobs_filtered(status=Status.DEAD, **filters).order_by("-finished_at")


class DeadLetterRetryAllView(StaffView):
    @management_schema({200: RetriedSerializer}, request=None)
    def post(self, request: Request) -> Response:
        """Retry every dead job under its own id."""
        retried = services.jobs_retry_dead()
        history.record_jobs(user=request.user, ids=retried, message="Retried through the API (all dead)")
        return Response({"retried": len(retried)})


class DeadLetterPurgeView(StaffView):
    required_permissions = {"POST": DELETE_JOBS}

    @management_schema({200: PurgedSerializer, 400: BAD_REQUEST}, request=PurgeSerializer)
    def post(self, request: Request) -> Response:
        """Delete dead jobs, all or those dead for longer than `older_than_days`."""
        days = validated(PurgeSerializer, request.data).get("older_than_days")
        before = timezone.now() - timedelta(days=days) if days is not None else None
        purged = services.jobs_purge_dead(finished_before=before)
        history.record_jobs(user=request.user, ids=purged, message="Purged through the API", flag=history.DELETION)
        return Response({"purged": len(purged)})


class QueueListView(QueueView):
    @management_schema({200: QueueSerializer(many=True)})
    def get(self, request: Request) -> Response:
        """Each queue with paused state, depth in Redis, queued and running jobs, and latency."""
        return Response(QueueSerializer(selectors.queue_overview(), many=True).data)


class QueuePauseView(QueueView):
    @management_schema({200: QueueSerializer, **QUEUE_NOT_FOUND}, request=None, parameters=[QUEUE])
    def post(self, request: Request, name: str) -> Response:
        """Pause a queue: nothing of it runs until it is resumed, across restarts."""
        state = services.queue_pause(queue=name, by=_actor(request))
        history.record(user=request.user, obj=state, message="Paused through the API")
        return Response(QueueSerializer(_queue(name)).data)


class QueueResumeView(QueueView):
    @management_schema({200: QueueResumedSerializer, **QUEUE_NOT_FOUND}, request=None, parameters=[QUEUE])
    def post(self, request: Request, name: str) -> Response:
        """Resume a paused queue and publish its queued jobs, oldest first."""
        state, published = services.queue_resume(queue=name, by=_actor(request))
        if state.pk is not None:
            history.record(user=request.user, obj=state, message="Resumed through the API")
        return Response(QueueResumedSerializer({**_queue(name), "published": published}).data)


class StatsView(StaffView):
    @management_schema({200: StatsSerializer})
    def get(self, request: Request) -> Response:
        """Jobs per status, queues, dead letters, workers online and the last hour's throughput."""
        return Response(StatsSerializer(selectors.job_stats()).data)


class LimitListView(QueueView):
    @management_schema({200: LimitSerializer(many=True)})
    def get(self, request: Request) -> Response:
        """Each type with a concurrency or rate limit (in code or overridden): the limit in force,
        where it comes from, and its usage now."""
        return Response(LimitSerializer(limit_selectors.limits_overview(), many=True).data)


class LimitView(QueueView):
    required_permissions = {"GET": VIEW_QUEUES, "PUT": CHANGE_QUEUES, "DELETE": CHANGE_QUEUES}

    @management_schema({200: LimitSerializer, 400: BAD_REQUEST}, parameters=[LIMIT_TYPE])
    def get(self, request: Request, type: str) -> Response:
        """One type's limits and usage; an unknown type is a 400 naming `type`."""
        return Response(LimitSerializer(limit_selectors.limit_detail(job_type=type)).data)

    @management_schema({200: LimitSerializer, 400: BAD_REQUEST}, parameters=[LIMIT_TYPE], request=LimitChangeSerializer)
    def put(self, request: Request, type: str) -> Response:
        """Override the type's limits at run time, across the cluster; the override replaces all the
        code's limits (a field left out is not limited)."""
        body = validated(LimitChangeSerializer, request.data)
        override = services.limit_set(
            type=type,
            concurrency=body.get("concurrency"),
            rate=body.get("rate") or None,
            limit_key=body.get("limit_key") or None,
            by=_actor(request),
        )
        history.record(user=request.user, obj=override, message="Set through the API")
        return Response(LimitSerializer(limit_selectors.limit_detail(job_type=type)).data)

    @management_schema({200: LimitSerializer, 400: BAD_REQUEST}, parameters=[LIMIT_TYPE])
    def delete(self, request: Request, type: str) -> Response:
        """Drop the type's override: the limits declared in code apply again."""
        override = services.limit_clear(type=type, by=_actor(request))
        if override is not None:
            history.record(user=request.user, obj=override, message="Cleared through the API", flag=history.DELETION)
        return Response(LimitSerializer(limit_selectors.limit_detail(job_type=type)).data)
