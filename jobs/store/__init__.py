"""The store: the writes of the job lifecycle and the reads of the hot path, behind one interface.

`PortableStore` (jobs/store/portable.py) does everything through Django's ORM and runs on any
database Django supports (the embedded SQLite default, in tests too). `PostgresStore`
(jobs/store/postgres.py) is the same interface with the hot path (claim, success, insert,
token lookup) as single prepared statements. `store()` picks one by the database, once per
process. The columns each write sets besides its move's status are stated once, here.
"""

from functools import cache
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, connections

from jobs.models import Outcome

if TYPE_CHECKING:
    from .portable import PortableStore

# What a claim resets, a success writes, and an opened attempt starts with.
CLAIM_RESETS = {"progress": 0, "progress_message": ""}
SUCCESS_SETS = {
    "progress": 100,
    "lease_expires_at": None,
    "error_type": "",
    "error_message": "",
    "error_traceback": "",
    "reason": "",
}
ATTEMPT_OPENS = {"outcome": Outcome.RUNNING, "error_type": "", "error_message": "", "traceback": ""}


@cache
def store() -> "PortableStore":
    """The store of this process's database."""
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        from .postgres import PostgresStore

        return PostgresStore()
    from .portable import PortableStore

    return PortableStore()
