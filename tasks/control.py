"""Remote control commands of the workers that differ from Celery's own.

`conf` (what Flower's worker page and `celery inspect conf` show) is Celery's table of the worker's
configuration, with every configured secret and URL password masked: Celery masks only keys named
like a secret, so REDIS_URL, CELERY_BROKER_URL and the cache's LOCATION went out with their
passwords. Registered under Celery's own name (jobs.adapters.internals.replace_conf_command), it replaces
Celery's command."""

from collections.abc import Mapping
from typing import Any

from celery.utils.saferepr import saferepr
from celery.utils.serialization import jsonify

from jobs.adapters import internals
from jobs.rules.input_limits import redact


def masked(value: Any) -> Any:
    """`value` with every string in it redacted, through mappings and sequences."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(masked(item) for item in value)
    return value


def conf_masked(table: dict) -> Any:
    """The worker's configuration table, secrets masked, as the `conf` command answers it."""
    wanted = {key: value for key, value in table.items() if isinstance(key, str) and not key.startswith("__")}
    return jsonify(masked(wanted), unknown_type_filter=lambda value: redact(saferepr(value)))


internals.replace_conf_command(conf_masked)
