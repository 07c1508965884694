"""Scenario 8: tick lateness of many schedules firing every minute, 1 mover against 3, and
against the lateness of as many delayed jobs released by one mover at one moment (same run)."""

import time
from datetime import timedelta

from tests import servers as svc

from .measure import ms
from .report import percentiles, save
from .stack import running_stack

MOVER_ENV = {"JOB_MOVER_METRICS_PORT": "0", "LOG_LEVEL": "INFO"}


def _start_movers(stack, count: int, tag: str) -> list:
    movers = []
    for n in range(count):
        mover = stack.spawn(f"{tag}-mover-{n}", [svc.python(), "manage.py", "run_mover"], MOVER_ENV)
        mover.wait_for_output("mover started", timeout=60)
        movers.append(mover)
    return movers


def _stop(movers: list) -> None:
    for mover in movers:
        mover.stop()


def _delayed_baseline(stack, jobs: int) -> dict:
    """`jobs` delayed jobs all due at the next whole minute, released by one mover: due -> queued."""
    from django.utils import timezone

    from jobs import services
    from jobs.models import Job

    now = timezone.now()
    due = (now + timedelta(seconds=65)).replace(second=0, microsecond=0)
    submissions = [{"type": "noop", "payload": {}, "run_at": due}] * jobs
    ids = []
    for start in range(0, jobs, 1000):
        ids += [job.id for job, _ in services.jobs_submit_many(submissions=submissions[start : start + 1000])]
    stack.settle()
    movers = _start_movers(stack, 1, "delayed")
    svc.wait_for(
        lambda: not Job.objects.filter(pk__in=ids, status="scheduled").exists(),
        timeout=(due - timezone.now()).total_seconds() + 300,
        what="the delayed jobs to be released",
        interval=0.5,
    )
    _stop(movers)
    rows = Job.objects.filter(pk__in=ids).values_list("updated_at", "run_at")
    return percentiles([(released - run_at).total_seconds() for released, run_at in rows])


def _create_schedules(count: int) -> None:
    from django.db import transaction

    from jobs import services

    with transaction.atomic():
        for n in range(count):
            services.schedule_create(name=f"bench-{n}", job_type="noop", cron="* * * * *")


def _phase(stack, movers: int, minutes: int) -> dict:
    """Run `movers` movers for `minutes` whole minutes of ticks; the lateness of the ticks they fired."""
    from django.utils import timezone

    from jobs.models import ScheduleRun

    stack.settle()
    started = _start_movers(stack, movers, f"sched{movers}")
    begin = timezone.now()
    # Ticks from the first whole minute after every mover is up (earlier ones fire late, at the start).
    first = (begin + timedelta(seconds=60)).replace(second=0, microsecond=0)
    last = first + timedelta(minutes=minutes - 1)
    while timezone.now() < last + timedelta(seconds=5):
        time.sleep(0.5)
    svc.wait_for(
        lambda: not _unfired(last),
        timeout=600,
        what=f"every tick up to {last.isoformat()}",
        interval=0.5,
    )
    _stop(started)
    rows = ScheduleRun.objects.filter(tick_at__gte=first, tick_at__lte=last, outcome="fired").values_list(
        "job__created_at", "tick_at"
    )
    lateness = [(created - tick).total_seconds() for created, tick in rows]
    missed = ScheduleRun.objects.filter(tick_at__gte=first, tick_at__lte=last).exclude(outcome="fired").count()
    return {"movers": movers, "ticks": len(lateness), "not_fired": missed, **percentiles(lateness)}


def _unfired(last) -> bool:
    from jobs.models import Schedule

    return Schedule.objects.filter(enabled=True, next_tick_at__lte=last).exists()


def schedules(*, schedules: int = 10_000, minutes: int = 2, movers: str = "1,3") -> dict:
    counts = [int(n) for n in movers.split(",") if n.strip()]
    with running_stack() as stack:
        baseline = _delayed_baseline(stack, schedules)
        _create_schedules(schedules)
        phases = []
        for count in counts:
            phases.append(_phase(stack, count, minutes))
    result = {"schedules": schedules, "minutes": minutes, "delayed_release": baseline, "phases": phases}
    rows = [
        ("schedules", f"{schedules:,} firing every minute, {minutes} minute(s) of ticks per configuration"),
        (
            f"baseline: {schedules:,} delayed jobs due at one moment, released by 1 mover, p50 / p99 / max",
            f"{ms(baseline['p50'])} / {ms(baseline['p99'])} / {ms(baseline['max'])}",
        ),
    ]
    for phase in phases:
        ratio = phase["p99"] / baseline["p99"] if baseline["p99"] else float("nan")
        rows.append(
            (
                f"tick lateness with {phase['movers']} mover(s), p50 / p99 / max ({phase['ticks']:,} ticks)",
                f"{ms(phase['p50'])} / {ms(phase['p99'])} / {ms(phase['max'])}; p99 {ratio:.2f}x the baseline's; "
                f"not fired: {phase['not_fired']}",
            )
        )
    if len(phases) > 1:
        one, many = phases[0], phases[-1]
        rows.append(
            (
                f"p99 with {many['movers']} movers / with {one['movers']}",
                f"{many['p99'] / one['p99']:.2f}x" if one["p99"] else "n/a",
            )
        )
    save("schedules", result, rows)
    return result
