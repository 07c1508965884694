"""Which errors are an outage to wait out, and which are bugs to report."""

import pytest
import redis
from django.db import IntegrityError, InterfaceError, InternalError, OperationalError, ProgrammingError
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError
from psycopg import errors as pg

from jobs.adapters.unavailable import broker_unavailable, database_unavailable


def wrapped(django_error: type[Exception], driver_error: Exception) -> Exception:
    """A driver error as Django raises it: its own class, the driver's error as the cause."""
    try:
        raise django_error(str(driver_error)) from driver_error
    except django_error as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("connection refused"),
        InterfaceError("connection already closed"),
        wrapped(InternalError, pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")),
    ],
)
def test_a_database_that_is_down_unreachable_or_read_only_is_unavailable(error):
    assert database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(InternalError, pg.InFailedSqlTransaction("current transaction is aborted")),
        IntegrityError("duplicate key"),
        ProgrammingError("column does not exist"),
        TypeError("a bug"),
        None,
    ],
)
def test_other_database_errors_are_bugs(error):
    assert not database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.OutOfMemoryError("OOM command not allowed"),
        KombuOperationalError("Error 111 connecting"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_a_broker_that_is_down_unreachable_read_only_or_full_is_unavailable(error):
    assert broker_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [redis.ResponseError("WRONGTYPE"), EncodeError("cannot serialize"), TypeError("a bug"), KeyError("x")],
)
def test_other_broker_errors_are_bugs(error):
    assert not broker_unavailable(error)
