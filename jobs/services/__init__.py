"""Every write to jobs goes through these functions; callers never set a status themselves."""

# ruff: noqa: F401 -- this package re-exports the services

from jobs.services.lifecycle import (
    Claim,
    Success,
    job_artifact_save,
    job_claim,
    job_fail,
    job_lost,
    job_progress,
    job_requeue,
    job_transition,
    jobs_extend_lease,
    jobs_succeed,
    jobs_transition,
)
from jobs.services.limits import job_starts_prune, jobs_wake_due, jobs_wake_waiting, limit_clear, limit_set
from jobs.services.operations import (
    job_cancel,
    job_delete,
    job_resubmit,
    job_retry,
    job_run_now,
    jobs_purge_dead,
    jobs_purge_finished,
    jobs_retry_dead,
)
from jobs.services.queues import queue_pause, queue_resume, queue_state, queues_sample
from jobs.services.recovery import (
    dead_letters_reconcile,
    jobs_dispatch_pending,
    jobs_redispatch_missing,
    jobs_release_due,
    jobs_requeue_lost,
)
from jobs.services.schedules import (
    SyncResult,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_trigger,
    schedule_update,
    schedules_fire_due,
    schedules_sync_code,
)
from jobs.services.submit import answered_with, job_submit, jobs_submit_many
