from dataclasses import dataclass, field

from django.urls import reverse

from jobs import services

from . import fence


@dataclass(frozen=True)
class JobContext:
    """What a handler knows about the attempt it runs in. Once the attempt is no longer its own
    (its lease ran out, the job was taken over or cancelled), check(), progress() and
    save_artifact() raise AttemptFenced (JobCancelled for a cancel): stop, and let it propagate."""

    job_id: str
    attempt: int
    serial: int = field(repr=False)

    @property
    def fencing_token(self) -> int:
        """A number that grows with every attempt of the job: give it to the systems the handler
        writes to, so they refuse a write from an attempt older than one they have seen."""
        return self.serial

    @property
    def fenced(self) -> bool:
        return fence.fenced(self.job_id, self.serial)

    def check(self) -> None:
        """Raise AttemptFenced if this attempt must stop (cheap: no query). Call it between steps."""
        fence.check(self.job_id, self.serial)

    def progress(self, percent: int, message: str = "") -> None:
        self.check()
        if not services.job_progress(job_id=self.job_id, serial=self.serial, percent=percent, message=message):
            raise fence.lost(self.job_id, self.serial, "progress refused: the job no longer runs under this attempt")

    def save_artifact(self, name: str, content: bytes | str, content_type: str = "application/octet-stream") -> str:
        """Keep a file for the job's owner to download, and return its URL's path (relative to the
        API's address; put it in the result). Text is kept as UTF-8."""
        self.check()
        data = content.encode() if isinstance(content, str) else content
        if not services.job_artifact_save(
            job_id=self.job_id, serial=self.serial, name=name, content=data, content_type=content_type
        ):
            raise fence.lost(self.job_id, self.serial, "artifact refused: the job no longer runs under this attempt")
        return reverse("job-artifact", args=[self.job_id, name])
