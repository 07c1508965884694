from dataclasses import dataclass

from jobs import services


@dataclass(frozen=True)
class JobContext:
    """What a handler knows about the attempt it runs in."""

    job_id: str
    attempt: int

    def progress(self, percent: int, message: str = "") -> None:
        services.job_progress(job_id=self.job_id, attempt=self.attempt, percent=percent, message=message)
