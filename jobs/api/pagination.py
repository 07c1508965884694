"""Pages of job lists, for clients (GET /jobs) and staff (GET /api/jobs/, /api/dead-letter/)."""

from rest_framework.pagination import PageNumberPagination


class JobPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
