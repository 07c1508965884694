"""`manage.py run_mail_sink`: the development stack's SMTP sink (jobs/devstack/mail_sink.py)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.devstack import mail_sink as devmail


class Command(BaseCommand):
    help = "Run the development SMTP sink on 127.0.0.1: keeps mail in a Maildir; greylist*@ and bounce*@ are refused."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--maildir", type=Path, default=None, help="default: JOB_DEV_MAILDIR")

    def handle(self, *args, port: int, maildir: Path | None, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("run_mail_sink is part of the development stack and needs DEBUG=1")
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a port number")
        target = maildir or settings.JOB_DEV_MAILDIR
        self.stdout.write(f"SMTP sink on 127.0.0.1:{port}, keeping mail in {target}")
        try:
            devmail.serve(port=port, maildir=target)
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            raise CommandError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
