"""Which OpenAPI operations have a test: `@covers("POST", "/api/jobs/{job_id}/retry/")` on the test.

tests/integration/test_openapi.py compares this with the generated schema, so an endpoint
added without a test fails the suite.
"""

from collections.abc import Callable

COVERED: set[tuple[str, str]] = set()


def covers(method: str, path: str) -> Callable:
    def mark(test: Callable) -> Callable:
        COVERED.add((method.upper(), path))
        return test

    return mark
