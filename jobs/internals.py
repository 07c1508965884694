"""Every use of a library's private API, in one place (the kombu transport subclass in
jobqueue_site/transport.py aside, which is such a use as a whole). tests/unit/test_internals.py
checks each against the installed library, so an upgrade that changes one fails loudly there."""

from typing import Any

from prometheus_client import values


def kombu_route(channel: Any, envelope: dict, queue: str) -> None:
    """Fill in a message's delivery info for `queue` as kombu's Redis channel does when it publishes."""
    channel._inplace_augment_message(envelope, "", queue)


def mark_fetched_empty(queryset: Any) -> None:
    """Mark a queryset evaluated and empty, as Django's prefetching marks what it fetched."""
    queryset._result_cache, queryset._prefetch_done = [], True


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
