"""Test setup: point Django at a PostgreSQL and a Redis that fixtures start on demand.

Unit tests touch neither; integration and e2e tests request them through the `db` and
`broker` fixtures, which start the servers once per session and clean them per test.
"""

import os
import tempfile

import django
import pytest

from tests import servers

SERVERS: dict[str, object] = {}


SQLITE_URL = ""


def _configure() -> None:
    """Runs at import, before any other conftest or test module imports Django code."""
    pg_port, redis_port = servers.free_port(), servers.free_port()
    var_dir = tempfile.mkdtemp(prefix="jq-var-")
    global SQLITE_URL
    if os.environ.get("JQ_TEST_DATABASE") == "sqlite":
        SQLITE_URL = f"sqlite:///{os.path.join(var_dir, 'jobqueue.sqlite3')}"
    # STATIC_ROOT: collectstatic writes here when a test needs the admin's CSS; WhiteNoise wants it to exist.
    os.makedirs(os.path.join(var_dir, "static"))
    SERVERS["postgres"] = servers.PostgresServer(pg_port, database="jobqueue", user="jobqueue")
    SERVERS["redis"] = servers.RedisServer(redis_port)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DEBUG": "0",
            "SECRET_KEY": "test-only-secret-key-not-for-production-use-0123456789",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            # JQ_TEST_DATABASE=sqlite runs the tests on the embedded default instead (the store
            # tests do, through `make test-sqlite`).
            "DATABASE_URL": SQLITE_URL or SERVERS["postgres"].url,
            "REDIS_URL": SERVERS["redis"].url,
            "JOB_HANDLER_MODULES": "tests.handlers",
            "JOBQUEUE_VAR_DIR": var_dir,
            "JOB_RETRY_BACKOFF_BASE": "0.5",
            "JOB_RETRY_BACKOFF_MAX": "5",
            "LOG_LEVEL": "INFO",
        }
    )
    django.setup()


_configure()


@pytest.fixture(scope="session")
def postgres():
    from django.core.management import call_command
    from django.db import connections

    server = SERVERS["postgres"]
    if SQLITE_URL:
        call_command("migrate", verbosity=0)
        yield None
        connections.close_all()
        return
    try:
        server.start()
        call_command("migrate", verbosity=0)
    except BaseException:
        server.stop()
        raise
    yield server
    connections.close_all()
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = SERVERS["redis"]
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


def _truncate_all() -> None:
    from django.db import connection, transaction

    keep = {"django_migrations", "django_content_type", "auth_permission"}
    tables = [name for name in connection.introspection.django_table_names(only_existing=True) if name not in keep]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # foreign keys are checked at the commit, all rows gone
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')
        else:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def db(postgres):
    """A clean, real PostgreSQL database in autocommit mode (commits are real, on_commit fires)."""
    _truncate_all()
    yield
    _truncate_all()


@pytest.fixture
def broker(redis_server):
    """A real Redis with every key but kombu's queue bindings removed."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for key in client.scan_iter(count=1000):
        if not key.startswith("_kombu.binding."):
            client.delete(key)
    yield client
    client.close()


@pytest.fixture
def make_user(db):
    """Create a user and return (user, token key)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    def make(username: str = "client", *, staff: bool = False, perms: tuple[str, ...] | None = None):
        """`staff`: an operator, with every permission of the jobs app unless `perms` names
        which ones (codenames, e.g. ("view_job",); () for none)."""
        from django.contrib.auth.models import Permission

        user = get_user_model().objects.create_user(username=username, password="pw-" + username, is_staff=staff)
        granted = Permission.objects.filter(content_type__app_label="jobs")
        if perms is not None:
            granted = granted.filter(codename__in=perms)
        if staff:
            user.user_permissions.set(granted)
        return user, Token.objects.create(user=user).key

    return make
