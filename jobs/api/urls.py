"""Routes of the staff-only management API, mounted under /api/."""

from django.urls import path

from jobs.api import management as views
from jobs.api import schedules

urlpatterns = [
    path("jobs/", views.JobListView.as_view(), name="api-jobs"),
    path("jobs/<str:job_id>/", views.JobDetailView.as_view(), name="api-job"),
    path("jobs/<str:job_id>/retry/", views.JobRetryView.as_view(), name="api-job-retry"),
    path("jobs/<str:job_id>/resubmit/", views.JobResubmitView.as_view(), name="api-job-resubmit"),
    path("jobs/<str:job_id>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("jobs/<str:job_id>/run-now/", views.JobRunNowView.as_view(), name="api-job-run-now"),
    path("dead-letter/", views.DeadLetterListView.as_view(), name="api-dead-letter"),
    path("dead-letter/retry-all/", views.DeadLetterRetryAllView.as_view(), name="api-dead-letter-retry-all"),
    path("dead-letter/purge/", views.DeadLetterPurgeView.as_view(), name="api-dead-letter-purge"),
    path("queues/", views.QueueListView.as_view(), name="api-queues"),
    path("queues/<str:name>/pause/", views.QueuePauseView.as_view(), name="api-queue-pause"),
    path("queues/<str:name>/resume/", views.QueueResumeView.as_view(), name="api-queue-resume"),
    path("limits/", views.LimitListView.as_view(), name="api-limits"),
    path("limits/<str:type>/", views.LimitView.as_view(), name="api-limit"),
    path("stats/", views.StatsView.as_view(), name="api-stats"),
    path("schedules/", schedules.ScheduleListView.as_view(), name="api-schedules"),
    path("schedules/<str:name>/", schedules.ScheduleDetailView.as_view(), name="api-schedule"),
    path("schedules/<str:name>/pause/", schedules.SchedulePauseView.as_view(), name="api-schedule-pause"),
    path("schedules/<str:name>/resume/", schedules.ScheduleResumeView.as_view(), name="api-schedule-resume"),
    path("schedules/<str:name>/trigger/", schedules.ScheduleTriggerView.as_view(), name="api-schedule-trigger"),
    path("schedules/<str:name>/runs/", schedules.ScheduleRunsView.as_view(), name="api-schedule-runs"),
]
