"""`manage.py run_dev`: the whole system on embedded defaults, supervised until Ctrl-C."""

import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from jobs.devstack import processes as devstack
from jobs.devstack.processes import Child, ProcessSpec, StopRequested, Supervisor
from jobs.rules.input_limits import redact
from jobs.rules.states import QUEUES

DEV_USER = "admin"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class DevConfig:
    web_port: int
    flower_port: int
    password: str
    flower_auth: str  # user:password; the gate's login (jobs/adapters/flower_gate.py)
    worker_metrics_port: int  # 0: off
    mover_metrics_port: int
    smtp_port: int  # the mail sink's; 0: EMAIL_HOST is set, so mail goes there instead
    # Passwords the operator set (JOBQUEUE_DEV_PASSWORD, FLOWER_BASIC_AUTH) are not printed;
    # only the built-in development defaults are.
    password_configured: bool = False
    flower_auth_configured: bool = False
    # Flower itself, behind the gate on flower_port: its private port and a login only the gate knows.
    flower_upstream_port: int = 0
    flower_upstream_auth: str = ""

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def flower(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def metrics_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/metrics" if port else "off (port 0)"


def process_specs(config: DevConfig) -> list[ProcessSpec]:
    """Every process run_dev supervises besides Redis; add new ones here."""
    python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
    celery = [python, "-m", "celery", "-A", "jobqueue_site"]
    worker = ["-Q", ",".join(QUEUES), "-c", "2", "-n", "dev@%h", "--loglevel", "INFO"]
    # Flower, on a private port, takes its login from FLOWER_BASIC_AUTH (on the command line `ps`
    # would show it); the gate on FLOWER_PORT checks the operator's login and throttles failures.
    # -q: without its banner, whose address is the private port.
    flower = ["-q", "flower", "--address=127.0.0.1", f"--port={config.flower_upstream_port}"]
    # Every address on the command line: the JOBQUEUE_FLOWER_GATE_*/UPSTREAM_* variables are a deployment's.
    gate = ["run_flower_gate", "--address=127.0.0.1", f"--port={config.flower_port}"]
    gate += ["--upstream-host=127.0.0.1", f"--upstream-port={config.flower_upstream_port}"]
    gate_env = {
        "JOBQUEUE_FLOWER_LOGIN": config.flower_auth,
        "JOBQUEUE_FLOWER_UPSTREAM_LOGIN": config.flower_upstream_auth,
    }
    worker_env = {"JOB_WORKER_METRICS_PORT": str(config.worker_metrics_port)}
    stopping = f": its running jobs get {settings.JOB_SHUTDOWN_GRACE:g}s to finish, then go back to their queue"
    mover_env = {"JOB_MOVER_METRICS_PORT": str(config.mover_metrics_port)}
    sink = [ProcessSpec("mail", [python, manage, "run_mail_sink", f"--port={config.smtp_port}"])]
    if config.smtp_port:
        worker_env |= {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(config.smtp_port)}
    return [
        *(sink if config.smtp_port else []),
        ProcessSpec("web", [python, manage, "runserver", "--noreload", f"127.0.0.1:{config.web_port}"]),
        ProcessSpec("worker", [*celery, "worker", *worker], env=worker_env, stopping=stopping),
        ProcessSpec("flower", [*celery, *flower], env={"FLOWER_BASIC_AUTH": config.flower_upstream_auth}),
        ProcessSpec("flower-gate", [python, manage, *gate], env=gate_env),
        ProcessSpec("mover", [python, manage, "run_mover"], env=mover_env),
    ]


def read_config() -> DevConfig:
    chosen = os.environ.get("JOBQUEUE_DEV_PASSWORD")
    password = chosen or "admin"
    # Flower's login: the operator's (FLOWER_BASIC_AUTH, or the dev password they chose), else one
    # made for this run and shown in its banner; never the admin's default, which they may change.
    flower_password = chosen or secrets.token_urlsafe(12)
    config = DevConfig(
        web_port=env_port("WEB_PORT", 8000),
        flower_port=env_port("FLOWER_PORT", 5555),
        password=password,
        flower_auth=os.environ.get("FLOWER_BASIC_AUTH") or f"{DEV_USER}:{flower_password}",
        worker_metrics_port=metrics_port("JOB_WORKER_METRICS_PORT", settings.JOB_WORKER_METRICS_PORT),
        mover_metrics_port=metrics_port("JOB_MOVER_METRICS_PORT", settings.JOB_MOVER_METRICS_PORT),
        smtp_port=0 if settings.EMAIL_HOST else smtp_port(),
        password_configured=bool(os.environ.get("JOBQUEUE_DEV_PASSWORD")),
        flower_auth_configured=bool(os.environ.get("FLOWER_BASIC_AUTH")),
        flower_upstream_port=devstack.any_free_port(),
        flower_upstream_auth=f"gate:{secrets.token_urlsafe(24)}",
    )
    if ":" not in config.flower_auth:
        raise CommandError("FLOWER_BASIC_AUTH must be user:password")
    for name, port in (("WEB_PORT", config.web_port), ("FLOWER_PORT", config.flower_port)):
        if not devstack.port_free(port):
            raise CommandError(f"port {port} on 127.0.0.1 is in use; set {name} to another port")
    return config


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise CommandError(f"{name}={raw!r} is not a port number")
    return int(raw)


def smtp_port() -> int:
    """The mail sink's port: JOBQUEUE_DEV_SMTP_PORT (1025), or any free one if it is taken."""
    port = env_port("JOBQUEUE_DEV_SMTP_PORT", 1025)
    return port if devstack.port_free(port) else devstack.any_free_port()


def metrics_port(name: str, port: int) -> int:
    """The configured scrape port (0 keeps it off), or any free one if it is taken."""
    if port and not devstack.port_free(port):
        return devstack.any_free_port()
    return port


def child_env(redis_url: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    if not env.get("DEBUG"):
        env["DEBUG"] = "1"  # settings only generate a SECRET_KEY in debug mode
    return env


def write_dev_env(path: Path, redis_url: str) -> None:
    """Leave what `manage.py jobs` in another shell needs to find this stack (settings read it
    in development only); private to this user, as the Redis URL may hold a password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Written by `manage.py run_dev`; read by manage.py in development.\n")
        out.write(f"DEBUG=1\nREDIS_URL={redis_url}\n")


def ensure_dev_user(password: str) -> tuple[str, bool]:
    """Create the dev superuser the first time (never touching it again: a password changed
    since stays); its API token, and whether `password` is still its password."""
    users = get_user_model().objects
    user = users.filter(username=DEV_USER).first()
    if user is None:
        user = users.create_superuser(username=DEV_USER, email="admin@localhost", password=password)
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, user.check_password(password)


def banner(config: DevConfig, *, token: str, redis_url: str, password_known: bool = True) -> str:
    """What `make run` prints once the stack answers; no configured secret but the dev logins."""
    if not password_known:
        password = "<the password you set>"
    else:
        password = "<JOBQUEUE_DEV_PASSWORD>" if config.password_configured else config.password
    web, login = config.web, f"(login {DEV_USER} / {password})"

    flower_user, _, flower_password = config.flower_auth.partition(":")
    if config.flower_auth_configured:
        flower_password = "<the password in FLOWER_BASIC_AUTH>"
    elif config.password_configured:
        flower_password = "<JOBQUEUE_DEV_PASSWORD>"
    worker, mover = config.metrics_url(config.worker_metrics_port), config.metrics_url(config.mover_metrics_port)
    auth = f'-H "Authorization: Token {token}"'
    mail = f"{web}/admin/mail/   (SMTP sink on 127.0.0.1:{config.smtp_port})" if config.smtp_port else "EMAIL_HOST"
    body = '{"type": "email_welcome", "payload": {"email": "you@example.com"}}'
    return f"""
jobqueue is running. Ctrl-C stops everything.

  API        {web}/submit-job  and  {web}/job-status/<id>
  API docs   {web}/api/docs/
  Admin      {web}/admin/   {login}
  Flower     {config.flower}/   (login {flower_user} / {flower_password})
  Metrics    web {web}/metrics   worker {worker}   mover {mover}
  Health     {web}/healthz?workers=1   (worker and mover: /healthz next to their /metrics)
  Redis      {redact(redis_url)}
  Mail       {mail}
  API token  {token}

Submit a welcome email job:
  curl -s -X POST {web}/submit-job {auth} -H "Content-Type: application/json" -d '{body}'
Follow it (put the "id" from the answer in place of <id>):
  curl -s {web}/job-status/<id> {auth}
See a retry, dead letters and a job's progress (in another shell, from this directory):
  .venv/bin/python manage.py jobs demo
"""


class Command(BaseCommand):
    help = "Start Redis (if needed), web, worker, Flower and the mover for development; Ctrl-C stops them all."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "run_dev starts a development stack and needs DEBUG=1 (make run sets it); in production run "
                "the web app, workers, mover and Flower as the README's Deployment section shows"
            )
        stop = StopRequested()
        config = read_config()
        supervisor = Supervisor(cwd=settings.BASE_DIR)
        redis_url, redis = self.start_redis(supervisor, stop)
        write_dev_env(settings.DEV_ENV_FILE, redis_url)
        dead: Child | None = None
        try:
            if self.migrate(stop):
                token, password_known = ensure_dev_user(config.password)
                env = child_env(redis_url)
                for spec in process_specs(config):
                    supervisor.start(spec, env=env)
                ready_text = banner(config, token=token, redis_url=redis_url, password_known=password_known)
                dead = self.supervise(supervisor, stop, ready_text, config.web)
        finally:
            supervisor.stop([child for child in supervisor.children if child is not redis])
            if redis is not None:
                supervisor.stop([redis])
        if dead is not None:
            raise CommandError(f"{dead.name} exited unexpectedly ({dead.how_it_ended()})")
        supervisor.say("Stopped.")

    def start_redis(self, supervisor: Supervisor, stop: StopRequested) -> tuple[str, Child | None]:
        """REDIS_URL if set, else a private, persistent Redis on loopback under var/redis."""
        url = os.environ.get("REDIS_URL") if "REDIS_URL" not in settings.DEV_ENV_APPLIED else None
        if url:
            if not devstack.wait_until(lambda: devstack.redis_answers(url), timeout=5):
                raise CommandError(f"REDIS_URL={url} does not answer")
            return url, None
        preferred = env_port("JOBQUEUE_DEV_REDIS_PORT", 6390)
        data_dir = settings.VAR_DIR / "redis"
        return devstack.start_private_redis(supervisor, data_dir=data_dir, preferred_port=preferred, stop=stop)

    def migrate(self, stop: StopRequested) -> bool:
        if not stop:
            call_command("migrate", interactive=False, verbosity=1)
        return not stop

    def supervise(self, supervisor: Supervisor, stop: StopRequested, ready_text: str, web: str) -> Child | None:
        """Print `ready_text` once `web`/healthz answers, then watch the children; returns one that died."""
        deadline, ready = time.monotonic() + READY_TIMEOUT, False
        while not stop:
            if (dead := supervisor.first_exited()) is not None:
                supervisor.say(f"{dead.name} exited unexpectedly ({dead.how_it_ended()}); stopping the rest")
                return dead
            if not ready and devstack.http_ok(f"{web}/healthz"):
                ready = True
                supervisor.say(ready_text)
            if not ready and time.monotonic() > deadline:
                raise CommandError(f"{web}/healthz did not answer 200 within {READY_TIMEOUT:.0f}s")
            time.sleep(0.2)
        supervisor.say(f"{stop.signal_name}: stopping everything")
        return None
