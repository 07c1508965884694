import uuid

from django.conf import settings
from django.db import models

from jobs.rules.states import Priority, Status


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    run_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started since submit or the last retry.")
    serial = models.PositiveIntegerField(
        default=0, help_text="Attempts ever started: the current attempt's number, which fences stale workers."
    )
    max_retries = models.PositiveIntegerField(default=3)
    timeout = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds per attempt.")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="Why the job failed or died.")
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,  # served by the (owner, -created_at) index
    )
    worker = models.CharField(max_length=255, blank=True, help_text="Host of the latest attempt.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running job whose lease runs out is taken as lost."
    )
    limit_key = models.CharField(
        max_length=150,
        null=True,
        blank=True,
        help_text="The partition of its type's limit (owner 5: customer_id=7, each owner's its own; "
        "customer_id=7 for a job from code; empty for the whole type); "
        "set when a limited claim first sees the job, none for types without limits.",
    )
    resubmitted_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resubmissions",
        db_index=False,  # a partial index below covers the few rows that have one
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Every status change rewrites the row, so each index costs on the hot path: partial
        # indexes hold only the rows in the status a reader looks for (mover, sweeps, dashboard).
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            models.Index(
                fields=["run_at"], name="job_waiting_run_at", condition=models.Q(status__in=["scheduled", "retrying"])
            ),
            models.Index(fields=["lease_expires_at"], name="job_running_lease", condition=models.Q(status="running")),
            models.Index(fields=["priority", "updated_at"], name="job_queued_age", condition=models.Q(status="queued")),
            models.Index(fields=["-finished_at"], name="job_dead_finished", condition=models.Q(status="dead")),
            # Limits: the running and queued jobs of a limited (type, partition) (a job gets its
            # partition at its first limited claim, so no job of a type without limits is in this
            # index), and the jobs waiting for a slot.
            models.Index(
                fields=["type", "limit_key", "status"],
                name="job_limit_slots",
                condition=models.Q(status__in=["queued", "running"], limit_key__isnull=False),
            ),
            models.Index(
                fields=["type", "limit_key", "created_at"],
                name="job_limit_waiting",
                condition=models.Q(status="waiting"),
            ),
            models.Index(
                fields=["run_at"],
                name="job_limit_wait_until",
                condition=models.Q(status="waiting", run_at__isnull=False),
            ),
            models.Index(
                fields=["resubmitted_from"],
                name="job_resubmitted_from",
                condition=models.Q(resubmitted_from__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=Status.values), name="job_status_valid"),
            models.CheckConstraint(condition=models.Q(priority__in=Priority.values), name="job_priority_valid"),
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_lte_100"),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_owner_idempotency_key_unique",
            ),
            # PostgreSQL counts NULLs as distinct in the one above: the owner-less jobs' keys
            # (CLI, Python) need their own (NULLS NOT DISTINCT is PostgreSQL 15+, not SQLite).
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False, owner__isnull=True),
                name="job_ownerless_idempotency_key_unique",
            ),
        ]
        # Beyond Django's four: the CLI's actor submitting in another user's name (`--owner`); and
        # internal types (the task API's django_task), submitted by code: a person choosing such a
        # job's payload (API, admin, CLI --as, schedules) needs `submit_internal_job`
        # (jobs.services.submit.check_reachable).
        permissions = [
            ("submit_for_others", "Can submit jobs in another user's name"),
            ("submit_internal_job", "Can submit jobs of internal types (Django tasks)"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"


class Outcome(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


class JobAttempt(models.Model):
    # Lookups by job are served by the unique (job, number) index.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="history", db_index=False)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="attempt_job_number_unique"),
            models.CheckConstraint(condition=models.Q(outcome__in=Outcome.values), name="attempt_outcome_valid"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"


class JobArtifact(models.Model):
    """A file a job made (a report's CSV), kept in the database so that any web process can serve
    it to the job's owner; deleted with its job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts", db_index=False)
    name = models.CharField(max_length=100)
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="artifact_job_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} of {self.job_id}"


class DeadJob(Job):
    """The dead-letter queue as the admin shows it: jobs whose retries ran out."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


class QueueState(models.Model):
    """Whether a queue is paused. Kept in the database so a pause outlives every process."""

    name = models.CharField(max_length=50, unique=True, choices=Priority.choices)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField(auto_now=True)
    changed_by = models.CharField(max_length=150, blank=True, help_text="Who paused or resumed it, and how.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(name__in=Priority.values), name="queuestate_name_valid"),
        ]

    def __str__(self) -> str:
        return f"queue {self.name} ({'paused' if self.paused else 'running'})"


class PendingDispatch(models.Model):
    """A queued job whose message the broker could not take (Redis down): the mover sends it
    once the broker answers again. Written only when a publish fails."""

    job = models.OneToOneField(Job, primary_key=True, on_delete=models.CASCADE, related_name="+")
    queue = models.CharField(max_length=10, choices=Priority.choices)
    timeout = models.PositiveIntegerField(null=True, blank=True)
    failed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["failed_at"]

    def __str__(self) -> str:
        return f"pending dispatch of {self.job_id} to {self.queue}"


class QueueSample(models.Model):
    """A queue's depth and latency at one moment, taken by the mover for the overview's charts. `at`
    is the sampling period's start, unique per queue, so any number of movers write one row."""

    queue = models.CharField(max_length=10, choices=Priority.choices)
    at = models.DateTimeField()
    depth = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages in Redis; none if Redis did not answer."
    )
    queued = models.PositiveIntegerField(default=0)
    latency_seconds = models.FloatField(default=0.0)
    paused = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "queue"]
        constraints = [models.UniqueConstraint(fields=["queue", "at"], name="queuesample_queue_at_unique")]
        indexes = [models.Index(fields=["at"], name="queuesample_at")]

    def __str__(self) -> str:
        return f"queue {self.queue} at {self.at.isoformat()}: {self.queued} queued, {self.latency_seconds:.1f}s"


# Recurring jobs


class MissedPolicy(models.TextChoices):
    """What to fire of the ticks that fell while no mover ran."""

    SKIP = "skip"  # only the latest missed tick
    ALL_WITHIN = "all_within"  # every missed tick within catch_up_seconds of now
    NONE = "none"  # none of them


class OverlapPolicy(models.TextChoices):
    """Whether a tick fires while the previous run of its schedule has not finished."""

    ALLOW = "allow"
    SKIP = "skip"


class ScheduleSource(models.TextChoices):
    CODE = "code"  # declared next to its job type, synced when a mover starts; read-only
    RUNTIME = "runtime"  # made through the admin, the API or the CLI


class TickOutcome(models.TextChoices):
    FIRED = "fired"
    MISSED = "missed"
    SKIPPED_OVERLAP = "skipped_overlap"


class Schedule(models.Model):
    """A recurring job: a cron expression or a fixed interval, in a time zone."""

    name = models.CharField(max_length=100, unique=True)
    job_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    max_retries = models.PositiveIntegerField(null=True, blank=True, help_text="None: the job type's default.")
    cron = models.CharField(max_length=100, blank=True, help_text="Five fields, or an alias such as @hourly.")
    interval_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Fire every this many seconds (instead of cron)."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone of the cron expression.")
    enabled = models.BooleanField(default=True, help_text="Off: paused.")
    missed = models.CharField(max_length=12, choices=MissedPolicy.choices, default=MissedPolicy.SKIP)
    catch_up_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="The window of missed ticks fired by all_within."
    )
    overlap = models.CharField(max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.ALLOW)
    source = models.CharField(max_length=8, choices=ScheduleSource.choices, default=ScheduleSource.RUNTIME)
    next_tick_at = models.DateTimeField(null=True, blank=True, help_text="The next tick to fire (UTC).")
    last_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["next_tick_at"], name="schedule_due", condition=models.Q(enabled=True)),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(~models.Q(cron="") & models.Q(interval_seconds__isnull=True))
                | (models.Q(cron="") & models.Q(interval_seconds__isnull=False)),
                name="schedule_cron_xor_interval",
            ),
            models.CheckConstraint(
                condition=models.Q(interval_seconds__isnull=True) | models.Q(interval_seconds__gte=1),
                name="schedule_interval_positive",
            ),
            models.CheckConstraint(condition=models.Q(priority__in=Priority.values), name="schedule_priority_valid"),
            models.CheckConstraint(condition=models.Q(missed__in=MissedPolicy.values), name="schedule_missed_valid"),
            models.CheckConstraint(condition=models.Q(overlap__in=OverlapPolicy.values), name="schedule_overlap_valid"),
            models.CheckConstraint(condition=models.Q(source__in=ScheduleSource.values), name="schedule_source_valid"),
        ]

    def __str__(self) -> str:
        every = self.cron or f"every {self.interval_seconds}s"
        return f"schedule {self.name} ({every})"


class ScheduleRun(models.Model):
    """One tick of a schedule: the job it fired, or why it fired none."""

    # Lookups by schedule are served by the (schedule, -tick_at) index.
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs", db_index=False)
    tick_at = models.DateTimeField(help_text="The tick's nominal time (UTC).")
    outcome = models.CharField(max_length=16, choices=TickOutcome.choices)
    job = models.OneToOneField(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="schedule_run")
    recorded_at = models.DateTimeField(help_text="When a mover fired or recorded the tick.")
    lateness_seconds = models.FloatField(null=True, blank=True, help_text="recorded_at - tick_at of a fired tick.")

    class Meta:
        ordering = ["schedule", "-tick_at"]
        indexes = [models.Index(fields=["schedule", "-tick_at"], name="schedulerun_schedule_tick")]
        constraints = [
            # A tick is fired at most once, by any number of movers.
            models.UniqueConstraint(fields=["schedule", "tick_at"], name="schedulerun_schedule_tick_unique"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=TickOutcome.values), name="schedulerun_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"tick {self.tick_at.isoformat()} of schedule {self.schedule_id}: {self.outcome}"


# --- Unique jobs ----------------------------------------------------------------------------


class UniqueJobKey(models.Model):
    """The job that holds a unique key (jobs.services.unique). The primary key is the constraint
    that makes two racing submits one job. A key is released lazily: the next submit with it
    takes it over once its job finished more than `unique_for` seconds ago; nothing changes when
    a job finishes. Deleted with its job."""

    key = models.CharField(primary_key=True, max_length=64, help_text="sha256 of type, owner and key material.")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    unique_for = models.PositiveIntegerField(help_text="Seconds the key stays taken after its job finished.")
    taken_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"unique key {self.key[:12]} held by {self.job_id}"


# Cluster-wide limits: run-time overrides of a type's limits, and the log of limited starts.


class JobLimit(models.Model):
    """A run-time override of a job type's limits (admin, management API, CLI). While it exists
    it replaces the limits declared in code, all of them: no concurrency and no rate here means
    the type runs unlimited. Deleting it brings back the code's limits."""

    type = models.CharField(max_length=100, unique=True)
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many running at once across every worker; empty: no limit."
    )
    rate = models.CharField(
        max_length=30, blank=True, help_text="At most this many starts per period: 60/minute, 5/second, 10/30s."
    )
    limit_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="A payload field that partitions the limits (customer_id), per owner of the job.",
    )
    changed_at = models.DateTimeField(auto_now=True)
    changed_by = models.CharField(max_length=150, blank=True, help_text="Who set it, and how.")

    class Meta:
        ordering = ["type"]
        verbose_name = "job limit"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(concurrency__isnull=True) | models.Q(concurrency__gte=1),
                name="joblimit_concurrency_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"limits of {self.type}"


class JobStart(models.Model):
    """A start of a rate-limited job, the sliding window's log; the mover prunes old rows."""

    type = models.CharField(max_length=100)
    limit_key = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["type", "limit_key", "at"], name="jobstart_type_key_at"),
            models.Index(fields=["at"], name="jobstart_at"),
        ]

    def __str__(self) -> str:
        return f"start of {self.type} {self.limit_key} at {self.at.isoformat()}"
