"""Which errors mean that PostgreSQL or Redis cannot serve now (an outage to wait out), as opposed
to a bug (to report loudly). The one classification every process uses: the API's `503`, the
worker's claim that waits, the publish that defers to the mover.
"""

import redis
from django.db import InterfaceError, InternalError, OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError

# OperationalError covers a refused or lost connection, a server shutting down and a statement
# timeout; InterfaceError a connection already closed.
DATABASE_ERRORS = (OperationalError, InterfaceError)
# SQLSTATE class 25006 (read_only_sql_transaction): the connection reached a read-only node, as
# after a failover onto a standby; PostgreSQL reports it as an InternalError, like real bugs.
READ_ONLY_SQLSTATE = "25006"

# Redis lost, unreachable, still loading, a read-only replica or out of memory; kombu unable to
# connect; a socket error that reached us unwrapped. Not a command Redis refused as malformed
# (`WRONGTYPE`, a bad argument): that is a bug.
BROKER_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
)


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` says the database cannot take this work now (down, unreachable, read-only)."""
    if isinstance(exc, DATABASE_ERRORS):
        return True
    return isinstance(exc, InternalError) and _sqlstate(exc) == READ_ONLY_SQLSTATE


def broker_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` comes from the broker being down, unreachable or refusing writes."""
    return isinstance(exc, BROKER_ERRORS)


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, from the driver's exception Django wraps (psycopg 3
    names it `sqlstate`, psycopg2 `pgcode`)."""
    for error in (exc, exc.__cause__):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code:
            return code
    return None
