from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from jobs.admin.devmail import mailbox
from jobs.api.health import healthz
from jobs.api.metrics_view import metrics_view
from jobs.api.views import (
    ClientJobCancelView,
    ClientJobListView,
    JobArtifactView,
    JobStatusView,
    SubmitJobsView,
    SubmitJobView,
)

urlpatterns = [
    path("submit-job", SubmitJobView.as_view(), name="submit-job"),
    path("submit-jobs", SubmitJobsView.as_view(), name="submit-jobs"),
    path("job-status/<str:job_id>", JobStatusView.as_view(), name="job-status"),
    path("jobs", ClientJobListView.as_view(), name="jobs"),
    path("jobs/<str:job_id>/cancel", ClientJobCancelView.as_view(), name="job-cancel"),
    path("jobs/<str:job_id>/artifacts/<str:name>", JobArtifactView.as_view(), name="job-artifact"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("jobs.api.urls")),
    path("admin/", admin.site.urls),
]
if settings.DEBUG:  # the development stack's mailbox (jobs/devstack/mail_sink.py)
    urlpatterns.insert(-1, path("admin/mail/", admin.site.admin_view(mailbox), name="dev-mailbox"))

handler500 = "jobs.api.errors.server_error"
