"""Recurring jobs in the staff-only management API: thin views over the schedule selectors and services."""

import copy

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import services
from jobs.api.management import BAD_REQUEST, management_schema
from jobs.api.pagination import JobPagination
from jobs.api.serializers import (
    PAGE_PARAMETERS,
    ErrorSerializer,
    JobDetailSerializer,
    ScheduleRunSerializer,
    ScheduleSerializer,
    ScheduleUpdateSerializer,
    ScheduleWriteSerializer,
    StrictSerializer,
    validated,
)
from jobs.models import Schedule
from jobs.rules.permissions import (
    ADD_SCHEDULES,
    CHANGE_SCHEDULES,
    DELETE_SCHEDULES,
    VIEW_SCHEDULES,
    OperatorPermission,
    may_view_every_job,
)
from jobs.services import history, selectors

NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The schedule's name.")
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such schedule.")}
READ_ONLY = {
    409: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="The schedule is defined in code: change it there (pause and resume work). "
        'The body names the field: {"source": ["..."]}.',
    )
}


class PageSerializer(StrictSerializer):
    also_allowed = PAGE_PARAMETERS


class ScheduleView(APIView):
    permission_classes = [OperatorPermission]
    required_permissions = {
        "GET": VIEW_SCHEDULES,
        "POST": CHANGE_SCHEDULES,
        "PATCH": CHANGE_SCHEDULES,
        "DELETE": DELETE_SCHEDULES,
    }


def _fresh(schedule: Schedule) -> dict:
    """The schedule as the API shows it, read again with its last run."""
    return ScheduleSerializer(selectors.schedule_with_last_run(name=schedule.name)).data


class ScheduleListView(GenericAPIView):
    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_SCHEDULES, "POST": ADD_SCHEDULES}
    serializer_class = ScheduleSerializer
    pagination_class = JobPagination

    @management_schema({200: ScheduleSerializer(many=True), 400: BAD_REQUEST})
    def get(self, request: Request) -> Response:
        """Schedules by name: next tick, last run (its outcome and its job's status), source and state."""
        validated(PageSerializer, request.query_params)
        # The page is chosen by name first, then only its rows get their last run: the
        # subqueries would otherwise run for every row an OFFSET skips.
        page = self.paginate_queryset(Schedule.objects.values_list("pk", flat=True))
        shown = selectors.schedules_overview(Schedule.objects.filter(pk__in=list(page)))
        return self.get_paginated_response(ScheduleSerializer(shown, many=True).data)

    @management_schema({201: ScheduleSerializer, 400: BAD_REQUEST}, request=ScheduleWriteSerializer)
    def post(self, request: Request) -> Response:
        """Create a run-time schedule: a cron expression or an interval, a time zone and its policies."""
        fields = validated(ScheduleWriteSerializer, request.data)
        schedule = services.schedule_create(**fields, actor=request.user)
        history.record(user=request.user, obj=schedule, message="Created through the API", flag=history.ADDITION)
        return Response(_fresh(schedule), status=status.HTTP_201_CREATED)


class ScheduleDetailView(ScheduleView):
    @management_schema({200: ScheduleSerializer, **NOT_FOUND}, parameters=[NAME])
    def get(self, request: Request, name: str) -> Response:
        """One schedule with its next tick and last run."""
        return Response(ScheduleSerializer(selectors.schedule_with_last_run(name=name)).data)

    @management_schema(
        {200: ScheduleSerializer, 400: BAD_REQUEST, **NOT_FOUND, **READ_ONLY},
        parameters=[NAME],
        request=ScheduleUpdateSerializer,
    )
    def patch(self, request: Request, name: str) -> Response:
        """Change the fields given of a run-time schedule; a code-defined one only takes `enabled`."""
        schedule = selectors.schedule_by_name(name=name)
        changes = validated(ScheduleUpdateSerializer, request.data)
        schedule = services.schedule_update(schedule=schedule, actor=request.user, **changes)
        changed = f"Changed {', '.join(sorted(changes))}" if changes else "Saved (no field given)"
        history.record(user=request.user, obj=schedule, message=f"{changed} through the API")
        return Response(_fresh(schedule))

    @management_schema({204: None, **NOT_FOUND, **READ_ONLY}, parameters=[NAME])
    def delete(self, request: Request, name: str) -> Response:
        """Delete a run-time schedule and its runs (their jobs stay); a code-defined one is 409."""
        schedule = selectors.schedule_by_name(name=name)
        services.schedule_delete(schedule=copy.copy(schedule))  # deleting clears the pk the history needs
        history.record(user=request.user, obj=schedule, message="Deleted through the API", flag=history.DELETION)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseView(ScheduleView):
    @management_schema({200: ScheduleSerializer, **NOT_FOUND}, request=None, parameters=[NAME])
    def post(self, request: Request, name: str) -> Response:
        """Pause a schedule (code-defined ones too): no tick fires until it is resumed."""
        schedule = services.schedule_pause(schedule=selectors.schedule_by_name(name=name))
        history.record(user=request.user, obj=schedule, message="Paused through the API")
        return Response(_fresh(schedule))


class ScheduleResumeView(ScheduleView):
    @management_schema({200: ScheduleSerializer, **NOT_FOUND}, request=None, parameters=[NAME])
    def post(self, request: Request, name: str) -> Response:
        """Resume a schedule from now on: the ticks that fell while paused are not fired."""
        schedule = services.schedule_resume(schedule=selectors.schedule_by_name(name=name))
        history.record(user=request.user, obj=schedule, message="Resumed through the API")
        return Response(_fresh(schedule))


TRIGGERED = OpenApiResponse(
    JobDetailSerializer,
    description="The job the schedule ran; to staff without `jobs.view_job`, only its `id` and `status`.",
)


class ScheduleTriggerView(ScheduleView):
    @management_schema({201: TRIGGERED, **NOT_FOUND}, request=None, parameters=[NAME])
    def post(self, request: Request, name: str) -> Response:
        """Run the schedule now: an ordinary job, recorded as a run; the next tick stays as it was."""
        schedule = selectors.schedule_by_name(name=name)
        job = services.schedule_trigger(schedule=schedule)
        history.record(user=request.user, obj=schedule, message=f"Run now through the API as job {job.pk}")
        if not may_view_every_job(request.user):  # as the schedule's runs show it
            return Response({"id": str(job.pk), "status": job.status}, status=status.HTTP_201_CREATED)
        return Response(JobDetailSerializer(selectors.job_by_id(job_id=job.pk)).data, status=status.HTTP_201_CREATED)


@management_schema({200: ScheduleRunSerializer(many=True), 400: BAD_REQUEST, **NOT_FOUND}, parameters=[NAME])
class ScheduleRunsView(ListAPIView):
    """The ticks of a schedule, newest first: fired (with the job and its status), missed or skipped."""

    permission_classes = [OperatorPermission]
    required_permissions = {"GET": VIEW_SCHEDULES}
    serializer_class = ScheduleRunSerializer
    pagination_class = JobPagination

    def get_queryset(self):
        validated(PageSerializer, self.request.query_params)
        return selectors.schedule_runs(schedule=selectors.schedule_by_name(name=self.kwargs["name"]), limit=None)
