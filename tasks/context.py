from dataclasses import dataclass, field

from jobs import services


@dataclass(frozen=True)
class JobContext:
    """What a handler knows about the attempt it runs in."""

    job_id: str
    attempt: int
    serial: int = field(repr=False)

    def progress(self, percent: int, message: str = "") -> None:
        services.job_progress(job_id=self.job_id, serial=self.serial, percent=percent, message=message)
