import pytest
from django.contrib.auth import get_user_model
from django.test import Client
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


@pytest.fixture
def operator(db) -> Client:
    """The admin, logged in as a superuser."""
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    client.user = user
    return client
