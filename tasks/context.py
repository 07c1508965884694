from dataclasses import dataclass, field

from django.urls import reverse

from jobs import services


@dataclass(frozen=True)
class JobContext:
    """What a handler knows about the attempt it runs in."""

    job_id: str
    attempt: int
    serial: int = field(repr=False)

    def progress(self, percent: int, message: str = "") -> None:
        services.job_progress(job_id=self.job_id, serial=self.serial, percent=percent, message=message)

    def save_artifact(self, name: str, content: bytes | str, content_type: str = "application/octet-stream") -> str:
        """Keep a file for the job's owner to download, and return its URL's path (relative to the
        API's address; put it in the result). Text is kept as UTF-8."""
        data = content.encode() if isinstance(content, str) else content
        services.job_artifact_save(
            job_id=self.job_id, serial=self.serial, name=name, content=data, content_type=content_type
        )
        return reverse("job-artifact", args=[self.job_id, name])
