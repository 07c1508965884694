"""Recurring jobs: creating, changing and firing schedules.

A due tick becomes an ordinary job through the submit path. The (schedule, tick_at) unique
constraint of ScheduleRun makes any number of movers fire each tick at most once.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs.models import Job, Schedule
from jobs.states import Priority


@dataclass
class SyncResult:
    """What schedules_sync_code changed, by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def schedule_create(
    *,
    name: str,
    job_type: str,
    payload: dict | None = None,
    priority: str = Priority.MEDIUM,
    max_retries: int | None = None,
    cron: str = "",
    interval_seconds: int | None = None,
    timezone: str = "UTC",
    enabled: bool = True,
    missed: str = "skip",
    catch_up_seconds: int | None = None,
    overlap: str = "allow",
    source: str = "runtime",
    now: datetime | None = None,
) -> Schedule:
    raise NotImplementedError


def schedule_update(*, schedule: Schedule, now: datetime | None = None, **changes: Any) -> Schedule:
    raise NotImplementedError


def schedule_pause(*, schedule: Schedule) -> Schedule:
    raise NotImplementedError


def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    raise NotImplementedError


def schedule_trigger(*, schedule: Schedule, now: datetime | None = None) -> Job:
    raise NotImplementedError


def schedule_delete(*, schedule: Schedule) -> None:
    raise NotImplementedError


def schedules_fire_due(*, now: datetime | None = None) -> int:
    raise NotImplementedError


def schedules_sync_code(*, now: datetime | None = None) -> SyncResult:
    raise NotImplementedError
