import pytest
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _services(db, broker):
    """Every integration test runs on a clean real PostgreSQL and Redis."""


@pytest.fixture
def client_for(make_user):
    def make(username: str = "client", *, staff: bool = False, perms: tuple[str, ...] | None = None):
        user, token = make_user(username, staff=staff, perms=perms)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        client.user = user
        return client

    return make
