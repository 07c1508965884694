"""`manage.py run_flower_gate`: the development stack's gate in front of Flower (jobs/flower_gate.py)."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs import flower_gate

LOGIN = "JOBQUEUE_FLOWER_LOGIN"  # user:password clients give the gate
UPSTREAM_LOGIN = "JOBQUEUE_FLOWER_UPSTREAM_LOGIN"  # user:password Flower itself was started with


class Command(BaseCommand):
    help = (
        f"Serve Flower (on 127.0.0.1:--upstream-port) on 127.0.0.1:--port behind the login in {LOGIN}, "
        "with failed logins throttled per address (JOB_LOGIN_MAX_FAILURES) and no framing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--upstream-port", type=int, required=True)

    def handle(self, *args, port: int, upstream_port: int, **options) -> None:
        logins = {name: os.environ.get(name, "") for name in (LOGIN, UPSTREAM_LOGIN)}
        for name, login in logins.items():
            if ":" not in login:
                raise CommandError(f"{name} must be user:password")  # never on the command line: ps shows it
        for option, value in (("--port", port), ("--upstream-port", upstream_port)):
            if not 0 < value < 65536:
                raise CommandError(f"{option} {value} is not a port number")
        failures = flower_gate.LoginFailures(settings.JOB_LOGIN_MAX_FAILURES, settings.JOB_LOGIN_LOCKOUT_SECONDS)
        gate = flower_gate.Gate(logins[LOGIN], upstream_port, logins[UPSTREAM_LOGIN], failures)
        try:
            server = flower_gate.serve(gate, address="127.0.0.1", port=port)
        except OSError as exc:
            raise CommandError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
        self.stdout.write(f"Flower on http://127.0.0.1:{port}/ (from 127.0.0.1:{upstream_port})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
