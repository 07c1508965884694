"""`manage.py run_flower_gate`: the gate in front of Flower (jobs/adapters/flower_gate.py), for the
development stack (run_dev gives it options) and the compose and Kubernetes deployments (which
give it the environment below)."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.adapters import flower_gate


def port_number(option: int | None, environ: str | None, source: str) -> int:
    """The option given, else the environment variable's value; `source` names both."""
    value = str(option) if option is not None else environ or ""
    if not value:
        raise CommandError(f"{source} is required: Flower's port")
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise CommandError(f"{source}: {value!r} is not a port number")
    return int(value)


class Command(BaseCommand):
    help = (
        "Serve Flower (at --upstream-host:--upstream-port) on --address:--port behind the login in "
        "JOBQUEUE_FLOWER_LOGIN, with failed logins throttled per client address (JOB_LOGIN_MAX_FAILURES, "
        "X-Forwarded-For through JOB_TRUSTED_PROXIES) and no framing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--address", help="listen here (JOBQUEUE_FLOWER_GATE_ADDR, default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="listen here (JOBQUEUE_FLOWER_GATE_PORT, default 5555)")
        parser.add_argument("--upstream-host", help="Flower's host (JOBQUEUE_FLOWER_UPSTREAM_HOST, default 127.0.0.1)")
        parser.add_argument("--upstream-port", type=int, help="Flower's port (JOBQUEUE_FLOWER_UPSTREAM_PORT)")

    def handle(self, *args, address, port, upstream_host, upstream_port, **options) -> None:
        # The logins come from the environment only: on the command line `ps` would show them.
        login = os.environ.get("JOBQUEUE_FLOWER_LOGIN", "")  # what clients give the gate
        upstream_login = os.environ.get("JOBQUEUE_FLOWER_UPSTREAM_LOGIN", "")  # what Flower was started with
        for name, value in (("JOBQUEUE_FLOWER_LOGIN", login), ("JOBQUEUE_FLOWER_UPSTREAM_LOGIN", upstream_login)):
            if ":" not in value:
                raise CommandError(f"{name} must be user:password")
        # Options (run_dev's) first, else the environment (compose's and Kubernetes').
        address = address or os.environ.get("JOBQUEUE_FLOWER_GATE_ADDR") or "127.0.0.1"
        port = port_number(
            port, os.environ.get("JOBQUEUE_FLOWER_GATE_PORT") or "5555", "--port (JOBQUEUE_FLOWER_GATE_PORT)"
        )
        upstream_host = upstream_host or os.environ.get("JOBQUEUE_FLOWER_UPSTREAM_HOST") or "127.0.0.1"
        upstream_port = port_number(
            upstream_port,
            os.environ.get("JOBQUEUE_FLOWER_UPSTREAM_PORT"),
            "--upstream-port (JOBQUEUE_FLOWER_UPSTREAM_PORT)",
        )
        failures = flower_gate.LoginFailures(settings.JOB_LOGIN_MAX_FAILURES, settings.JOB_LOGIN_LOCKOUT_SECONDS)
        gate = flower_gate.Gate(login, upstream_port, upstream_login, failures, upstream_host=upstream_host)
        try:
            server = flower_gate.serve(gate, address=address, port=port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {address}:{port}: {exc}") from None
        self.stdout.write(f"Flower on http://{address}:{port}/ (from {upstream_host}:{upstream_port})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
