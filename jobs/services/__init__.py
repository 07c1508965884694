"""Every write to jobs goes through these functions; callers never set a status themselves."""

from .lifecycle import (
    Claim,
    Success,
    job_claim,
    job_fail,
    job_lost,
    job_progress,
    job_requeue,
    job_succeed,
    job_transition,
    jobs_extend_lease,
    jobs_succeed,
    jobs_transition,
)
from .operations import (
    job_cancel,
    job_delete,
    job_resubmit,
    job_retry,
    job_run_now,
    jobs_purge_dead,
    jobs_purge_finished,
    jobs_retry_dead,
)
from .queues import queue_pause, queue_resume, queue_state, queues_sample
from .recovery import jobs_dispatch_pending, jobs_redispatch_missing, jobs_release_due, jobs_requeue_lost
from .submit import job_submit, jobs_submit_many

__all__ = [
    "Claim",
    "Success",
    "job_cancel",
    "job_claim",
    "job_delete",
    "job_fail",
    "job_lost",
    "job_progress",
    "job_requeue",
    "job_resubmit",
    "job_retry",
    "job_run_now",
    "job_submit",
    "job_succeed",
    "job_transition",
    "jobs_dispatch_pending",
    "jobs_extend_lease",
    "jobs_purge_dead",
    "jobs_purge_finished",
    "jobs_redispatch_missing",
    "jobs_release_due",
    "jobs_requeue_lost",
    "jobs_retry_dead",
    "jobs_succeed",
    "jobs_submit_many",
    "jobs_transition",
    "queue_pause",
    "queue_resume",
    "queue_state",
    "queues_sample",
]
