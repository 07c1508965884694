from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from jobs.api import JobStatusView, SubmitJobView
from jobs.health import healthz

urlpatterns = [
    path("submit-job", SubmitJobView.as_view(), name="submit-job"),
    path("job-status/<str:job_id>", JobStatusView.as_view(), name="job-status"),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("jobs.api_urls")),
    path("admin/", admin.site.urls),
]
