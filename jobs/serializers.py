from django.conf import settings
from rest_framework import serializers

from .models import Job, JobAttempt
from .states import Priority

SUBMIT_FIELDS = {"type", "payload", "priority", "delay", "run_at", "max_retries", "timeout", "idempotency_key"}


class SubmitJobSerializer(serializers.Serializer):
    """The shape of a submission; the business rules (type, payload, limits) live in job_submit."""

    type = serializers.CharField(max_length=100)
    payload = serializers.JSONField(required=False, default=dict)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, default=Priority.MEDIUM)
    delay = serializers.FloatField(required=False, allow_null=True)
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    max_retries = serializers.IntegerField(required=False, allow_null=True)
    timeout = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=24 * 3600)
    idempotency_key = serializers.CharField(required=False, allow_null=True, max_length=255)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - SUBMIT_FIELDS)
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)

    def validate_payload(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("payload must be a JSON object")
        return value

    def validate_delay(self, value):
        if value is not None and value != value:  # NaN
            raise serializers.ValidationError("delay must be a number of seconds")
        return value


class SubmitJobsSerializer(serializers.Serializer):
    jobs = SubmitJobSerializer(many=True, allow_empty=False, max_length=settings.JOB_BULK_MAX)

    def to_internal_value(self, data):
        if isinstance(data, dict) and set(data) - {"jobs"}:
            raise serializers.ValidationError({name: ["unknown field"] for name in sorted(set(data) - {"jobs"})})
        return super().to_internal_value(data)


class SubmittedJobSerializer(serializers.ModelSerializer):
    """The short form a bulk submission answers with, one per job in submission order."""

    class Meta:
        model = Job
        fields = ["id", "type", "status", "priority", "run_at", "idempotency_key"]


class AttemptSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = JobAttempt
        fields = ["number", "started_at", "finished_at", "worker", "outcome", "error"]

    def get_error(self, attempt: JobAttempt) -> dict | None:
        if not attempt.error_type:
            return None
        return {"type": attempt.error_type, "message": attempt.error_message}


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

    def get_error(self, job: Job) -> dict | None:
        if not job.error_type:
            return None
        return {"type": job.error_type, "message": job.error_message, "traceback": job.error_traceback}

    def get_progress(self, job: Job) -> dict:
        return {"percent": job.progress, "message": job.progress_message}
