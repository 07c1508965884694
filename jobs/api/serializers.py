from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Job, JobAttempt, MissedPolicy, OverlapPolicy, Schedule, ScheduleRun
from jobs.rules.states import Priority, Status
from jobs.services.schedules import FIELDS


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them."""

    also_allowed: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields) - self.also_allowed)
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """`data` checked by `serializer_class`, or a ValidationError (a 400 naming each bad field)."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def json_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise serializers.ValidationError("payload must be a JSON object")


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its offset (`Z`, `+02:00`): a time without one is refused, not guessed."""

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            raise serializers.ValidationError("give a time zone, e.g. 2030-01-01T09:00:00Z or +02:00")
        return super().enforce_timezone(value)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": 255},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ],
        "nullable": True,
        "description": "What makes two jobs the same: a list of payload field names, or an explicit key. "
        "Default: the whole payload. Keys are per type and per owner.",
    }
)
class UniqueKeyField(serializers.JSONField):
    """A string or a list of field names; its meaning is checked by the submit (jobs.services.unique)."""


class SubmitJobSerializer(StrictSerializer):
    """The shape of a submission; the business rules (type, payload, limits) live in job_submit."""

    type = serializers.CharField(max_length=100)
    payload = serializers.JSONField(required=False, default=dict, validators=[json_object])
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, default=Priority.MEDIUM)
    delay = serializers.FloatField(required=False, allow_null=True)
    run_at = AwareDateTimeField(required=False, allow_null=True)
    max_retries = serializers.IntegerField(required=False, allow_null=True)
    timeout = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=24 * 3600)
    idempotency_key = serializers.CharField(required=False, allow_null=True, max_length=255)
    unique_for = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Seconds: make the job unique (see unique_key); its key stays taken while it is unfinished "
        "and this long after it finished. Overrides the type's.",
    )
    unique_key = UniqueKeyField(required=False, allow_null=True)

    def validate_delay(self, value):
        if value is not None and value != value:  # NaN
            raise serializers.ValidationError("delay must be a number of seconds")
        return value


class SubmitJobsSerializer(serializers.Serializer):
    # Not a StrictSerializer, whose docstring would become this schema's description.
    jobs = SubmitJobSerializer(many=True, allow_empty=False, max_length=settings.JOB_BULK_MAX)

    def to_internal_value(self, data):
        if isinstance(data, dict) and set(data) - {"jobs"}:
            raise serializers.ValidationError({name: ["unknown field"] for name in sorted(set(data) - {"jobs"})})
        return super().to_internal_value(data)


DUPLICATE_HELP = (
    "Why the answer is an existing job: `idempotency_key` (the key was used before) or `unique_key` "
    "(this job holds the unique key); null for a new job."
)


def duplicate_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=["idempotency_key", "unique_key"], allow_null=True, help_text=DUPLICATE_HELP)


class SubmittedJobSerializer(serializers.ModelSerializer):
    """The short form a bulk submission answers with, one per job in submission order."""

    class Meta:
        model = Job
        fields = ["id", "type", "status", "priority", "run_at", "idempotency_key"]


class SubmitJobsAnswerSerializer(serializers.Serializer):
    """The answer to a bulk submission (for the schema; the view builds it from SubmittedJobSerializer)."""

    class Item(SubmittedJobSerializer):
        created = serializers.BooleanField(help_text="False when an idempotency or unique key matched a known job.")
        duplicate = duplicate_field()

        class Meta(SubmittedJobSerializer.Meta):
            fields = [*SubmittedJobSerializer.Meta.fields, "created", "duplicate"]

    jobs = Item(many=True)


class AttemptSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = JobAttempt
        fields = ["number", "started_at", "finished_at", "worker", "outcome", "error"]

    def get_error(self, attempt: JobAttempt) -> dict | None:
        return {"type": attempt.error_type, "message": attempt.error_message} if attempt.error_type else None


class ErrorSummarySerializer(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class JobErrorSerializer(ErrorSummarySerializer):
    traceback = serializers.CharField(required=False, help_text="Shown only to staff who may view jobs.")


class JobStatusSerializer(serializers.ModelSerializer):
    retries = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    history = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "status",
            "priority",
            "payload",
            "attempts",
            "retries",
            "max_retries",
            "timeout",
            "result",
            "error",
            "reason",
            "progress",
            "run_at",
            "idempotency_key",
            "created_at",
            "started_at",
            "finished_at",
            "history",
        ]

    def get_retries(self, job: Job) -> int:
        return max(job.attempts - 1, 0)

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        if not job.error_type:
            return None
        return {"type": job.error_type, "message": job.error_message, "traceback": job.error_traceback}

    def get_progress(self, job: Job) -> dict:
        return {"percent": job.progress, "message": job.progress_message}


class SubmitAnswerSerializer(JobStatusSerializer):
    """A job as a submit answers it (for the schema; the view adds `duplicate` to the job's status)."""

    duplicate = duplicate_field()

    class Meta(JobStatusSerializer.Meta):
        fields = [*JobStatusSerializer.Meta.fields, "duplicate"]


# --- Management API (staff) ------------------------------------------------------------------


PAGE_PARAMETERS = frozenset({"page", "page_size", "format"})


class JobFilterSerializer(StrictSerializer):
    also_allowed = PAGE_PARAMETERS
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    type = serializers.CharField(required=False, max_length=100)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601; jobs created at or after it.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601; jobs created before it.")
    search = serializers.CharField(
        required=False, max_length=200, help_text="Text in the id, type, error, reason or payload."
    )


class DeadLetterFilterSerializer(StrictSerializer):
    also_allowed = PAGE_PARAMETERS
    type = serializers.CharField(required=False, max_length=100)
    search = serializers.CharField(required=False, max_length=200)


class ProgressSerializer(serializers.Serializer):
    percent = serializers.IntegerField(min_value=0, max_value=100)
    message = serializers.CharField(allow_blank=True)


class JobSummarySerializer(serializers.ModelSerializer):
    """A job as listed: no payload, result or history."""

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "status",
            "priority",
            "attempts",
            "max_retries",
            "progress",
            "reason",
            "error",
            "owner",
            "worker",
            "run_at",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(ErrorSummarySerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        return {"type": job.error_type, "message": job.error_message} if job.error_type else None

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job: Job) -> dict:
        return {"percent": job.progress, "message": job.progress_message}


class JobDetailSerializer(JobStatusSerializer):
    """A job with everything: payload, result, error with traceback, history, owner."""

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta(JobStatusSerializer.Meta):
        fields = [*JobStatusSerializer.Meta.fields, "owner", "worker", "resubmitted_from", "updated_at"]


class JobRetrySerializer(StrictSerializer):
    payload = serializers.JSONField(
        required=False,
        validators=[json_object],
        help_text="A corrected payload (JSON object), validated like a submission.",
    )


class PurgeSerializer(StrictSerializer):
    older_than_days = serializers.FloatField(
        required=False, min_value=0, max_value=36500, help_text="Only jobs dead for longer than this many days."
    )


class RetriedSerializer(serializers.Serializer):
    retried = serializers.IntegerField()


class PurgedSerializer(serializers.Serializer):
    purged = serializers.IntegerField()


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    changed_at = serializers.DateTimeField(allow_null=True, help_text="When it was last paused or resumed.")
    changed_by = serializers.CharField(allow_blank=True)
    depth = serializers.IntegerField(allow_null=True, help_text="Messages waiting in Redis; null if Redis is down.")
    queued = serializers.IntegerField(help_text="Jobs queued in the database.")
    running = serializers.IntegerField()
    latency_seconds = serializers.FloatField(help_text="Age of the oldest queued job; 0 when none waits.")


class QueueResumedSerializer(QueueSerializer):
    published = serializers.IntegerField(help_text="Queued jobs published on resume.")


class LastHourSerializer(serializers.Serializer):
    processed = serializers.IntegerField(help_text="Attempts finished: succeeded and failed.")
    succeeded = serializers.IntegerField(help_text="As jobs_processed_total counts.")
    failed = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    statuses = serializers.DictField(child=serializers.IntegerField(), help_text="Jobs per status.")
    queues = QueueSerializer(many=True)
    dead_letter = serializers.IntegerField(allow_null=True, help_text="Messages on the dead_letter list.")
    workers = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="Worker nodes announcing themselves in Redis."
    )
    last_hour = LastHourSerializer()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- Schedules (management API) ----------------------------------------------------------------


# What the schedule's seconds columns hold (PositiveIntegerField): about 68 years.
LARGEST_SECONDS = 2**31 - 1


class ScheduleWriteSerializer(StrictSerializer):
    """The shape of a schedule's fields; the rules (cron, time zone, type, payload, policies) live
    in schedule_create and schedule_update, which name the bad field."""

    name = serializers.CharField(max_length=100)
    job_type = serializers.CharField(max_length=100)
    payload = serializers.JSONField(required=False, validators=[json_object])
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    max_retries = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="null: the job type's default."
    )
    cron = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Five fields or an alias (@hourly, @daily...)."
    )
    interval_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=LARGEST_SECONDS,
        help_text="Instead of cron: fire every this many seconds.",
    )
    timezone = serializers.CharField(required=False, max_length=64, help_text="IANA name, e.g. Europe/Berlin.")
    enabled = serializers.BooleanField(required=False, help_text="false: paused.")
    missed = serializers.ChoiceField(choices=MissedPolicy.choices, required=False)
    catch_up_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=LARGEST_SECONDS,
        help_text="The window of missed ticks `all_within` fires.",
    )
    overlap = serializers.ChoiceField(choices=OverlapPolicy.choices, required=False)


class ScheduleUpdateSerializer(ScheduleWriteSerializer):
    """Only the fields given change; a schedule keeps its name."""

    name = None
    job_type = serializers.CharField(max_length=100, required=False)


class ScheduleLastRunSerializer(serializers.Serializer):
    tick_at = serializers.DateTimeField()
    outcome = serializers.CharField()
    job = serializers.UUIDField(allow_null=True)
    job_status = serializers.CharField(allow_null=True, help_text="The status of the job the tick fired, if any.")


class ScheduleSerializer(serializers.ModelSerializer):
    """A schedule with its next tick and its last run."""

    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [*FIELDS, "source", "next_tick_at", "last_tick_at", "last_run", "created_at", "updated_at"]

    @extend_schema_field(ScheduleLastRunSerializer(allow_null=True))
    def get_last_run(self, schedule: Schedule) -> dict | None:
        tick_at = getattr(schedule, "last_run_tick_at", None)
        if tick_at is None:
            return None
        return {
            "tick_at": serializers.DateTimeField().to_representation(tick_at),
            "outcome": schedule.last_run_outcome,
            "job": str(schedule.last_run_job_id) if schedule.last_run_job_id else None,
            "job_status": schedule.last_run_job_status,
        }


class ScheduleRunSerializer(serializers.ModelSerializer):
    """One tick: fired (with its job and the job's status), or why not."""

    job_status = serializers.CharField(source="job.status", allow_null=True, default=None)

    class Meta:
        model = ScheduleRun
        fields = ["tick_at", "outcome", "job", "job_status", "recorded_at", "lateness_seconds"]


class LimitValuesSerializer(serializers.Serializer):
    concurrency = serializers.IntegerField(allow_null=True, help_text="At most this many running at once; null: none.")
    rate = serializers.CharField(
        allow_null=True, help_text="At most this many starts per period (60/minute); null: none."
    )
    limit_key = serializers.CharField(allow_null=True, help_text="The payload field that partitions the limits.")


class LimitSerializer(LimitValuesSerializer):
    type = serializers.CharField()
    source = serializers.ChoiceField(
        choices=["code", "override"], help_text="Whether a run-time override or the code's declaration applies."
    )
    describe = serializers.CharField(help_text="The effective limits in words.")
    code = LimitValuesSerializer(help_text="The limits declared in code, which apply when no override is set.")
    running = serializers.IntegerField(help_text="Jobs of the type running now under the limit.")
    starts_in_window = serializers.IntegerField(help_text="Starts in the rate's window (0 without a rate).")
    waiting = serializers.IntegerField(help_text="Jobs waiting for a slot.")
    changed_by = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField(allow_null=True)


class LimitChangeSerializer(StrictSerializer):
    """A run-time override: it replaces all the code's limits of the type (what is left out is not limited)."""

    concurrency = serializers.IntegerField(required=False, allow_null=True, help_text="1 or more; null: no limit.")
    rate = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=30,
        help_text="N/second, N/minute, N/hour, N/day or N/Ks.",
    )
    limit_key = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=100,
        help_text="A payload field, such as customer_id.",
    )
