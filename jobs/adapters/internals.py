"""Every use of a library's private API, in one place (the kombu transport subclass in
jobs/adapters/transport.py aside, which is such a use as a whole). tests/unit/test_internals.py
checks each against the installed library, so an upgrade that changes one fails loudly there, and
tests/unit/test_rules_in_one_place.py fails a private API used anywhere else."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from celery.utils.serialization import strtobool
from celery.worker.control import inspect_command
from celery.worker.request import Request
from kombu.transport import TRANSPORT_ALIASES
from prometheus_client import values


def kombu_route(channel: Any, envelope: dict, queue: str) -> None:
    """Fill in a message's delivery info for `queue` as kombu's Redis channel does when it publishes."""
    channel._inplace_augment_message(envelope, "", queue)


def mark_fetched_empty(queryset: Any) -> None:
    """Mark a queryset evaluated and empty, as Django's prefetching marks what it fetched."""
    queryset._result_cache, queryset._prefetch_done = [], True


def set_prefetched(instance: Any, relation: str, queryset: Any) -> None:
    """Give a model instance the rows of a `prefetch_related` relation without a query."""
    instance._prefetched_objects_cache = {relation: queryset}


def mark_saved(instance: Any, alias: str) -> None:
    """Tell Django a model instance stored by our own statement is in the database now."""
    instance._state.adding, instance._state.db = False, alias


def names_with_values(metrics: list[Any]) -> list[str]:
    """The labelled metrics that already hold a value in this process."""
    return [metric._name for metric in metrics if metric._metrics]


def use_multiprocess_values() -> None:
    """Make metric values created from now on live in PROMETHEUS_MULTIPROC_DIR's files."""
    values.ValueClass = values.MultiProcessValue()


def set_return_value(result: Any, value: Any) -> None:
    """Give a task result (Django's frozen TaskResult) its return value, as Django's own backends do."""
    object.__setattr__(result, "_return_value", value)


def register_kombu_transport(path: str, *schemes: str) -> None:
    """Make kombu build the transport at `path` ("module:Class") for URLs of `schemes`."""
    TRANSPORT_ALIASES.update(dict.fromkeys(schemes, path))


class RequestWithFailedRuntime(Request):
    """Celery's request, its task-failed event carrying the attempt's runtime as task-succeeded
    does (Celery sends none on a failure), so Flower shows how long a failed job ran."""

    def send_event(self, type: str, **fields: object) -> None:
        if type == "task-failed" and self.time_start and "runtime" not in fields:
            fields["runtime"] = max(time.time() - self.time_start, 0.0)
        super().send_event(type, **fields)


def replace_conf_command(reply: Callable[[dict], Any]) -> None:
    """Answer the workers' `conf` command (`celery inspect conf`, Flower's worker page) with
    `reply(configuration table)`, in place of Celery's own command of that name."""

    @inspect_command(
        name="conf", alias="dump_conf", signature="[include_defaults=False]", args=[("with_defaults", strtobool)]
    )
    def conf(state: Any, with_defaults: bool = False, **kwargs: Any) -> Any:
        """List configuration, secrets masked."""
        return reply(state.app.conf.table(with_defaults=with_defaults))


def redis_pack_transaction(connection: Any, commands: list[tuple]) -> list[bytes]:
    """`commands` in MULTI/EXEC, encoded as redis-py sends them, for `redis_send_packed`."""
    return connection.pack_commands([("MULTI",), *commands, ("EXEC",)])


def redis_send_packed(connection: Any, packed: list[bytes]) -> None:
    """Send encoded commands on a redis-py connection without reading their replies."""
    connection.send_packed_command(packed, check_health=False)


def allow_prepared_statements(raw: Any, threshold: int) -> None:
    """Let a psycopg connection of Django's prepare statements (Django turns them off, and psycopg
    then ignores prepare=True too); `threshold`: executions before it prepares one unasked."""
    if raw.prepare_threshold is None:
        raw.prepare_threshold = threshold


@contextmanager
def pipelined_transaction(cursor: Any) -> Iterator[None]:
    """The statements run inside, pipelined in one round trip, in a transaction: the one open on
    Django's connection, or, on a connection Django keeps in autocommit, BEGIN ... COMMIT of our own,
    which Django does not see (so nothing may call Django's transaction API inside)."""
    import psycopg
    from psycopg import pq

    raw = cursor.connection
    own = raw.autocommit
    try:
        with raw.pipeline():
            if own:
                cursor.execute("BEGIN")
            yield
            if own:
                cursor.execute("COMMIT")
    except psycopg.Error:
        if own and raw.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            with suppress(psycopg.Error):
                raw.rollback()  # the statements after the error were skipped, the COMMIT too
        raise
