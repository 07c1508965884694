"""A private PostgreSQL and Redis for a benchmark run, and the jobqueue processes on top."""

import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests import servers

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """Servers on free loopback ports; Django is configured against them on `start`."""

    def __init__(self) -> None:
        self.postgres = servers.PostgresServer(servers.free_port(), database="jobqueue", user="jobqueue")
        self.redis = servers.RedisServer(servers.free_port())
        self.processes: list[servers.Process] = []
        self.env: dict[str, str] = {}

    def start(self) -> "Stack":
        self.postgres.start()
        self.redis.start()
        self.env = {
            "DJANGO_SETTINGS_MODULE": "jobqueue_site.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "JOBQUEUE_VAR_DIR": tempfile.mkdtemp(prefix="jq-bench-var-"),
            "LOG_LEVEL": "WARNING",
            "CELERY_WORKER_SEND_TASK_EVENTS": "0",
            "JOB_HANDLER_MODULES": "bench.handlers",
            "JOB_THROTTLE_USER": "1000000/second",
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return self

    def spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None, *, django: bool = True
    ) -> servers.Process:
        """`django=False`: without DJANGO_SETTINGS_MODULE, so Celery's Django fixup stays out of a baseline."""
        environment = {**os.environ, **self.env, **(env or {})}
        if not django:
            environment.pop("DJANGO_SETTINGS_MODULE", None)
        process = servers.Process(f"bench-{name}", command, environment)
        self.processes.append(process)
        return process

    def worker(
        self,
        name: str,
        *,
        app: str = "jobqueue_site",
        concurrency: int = 2,
        pool: str = "prefork",
        queues: str = "high,medium,low",
        env: dict[str, str] | None = None,
    ) -> servers.Process:
        command = [
            servers.celery_binary(),
            "-A",
            app,
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        process = self.spawn(name, command, env, django=app == "jobqueue_site")
        process.wait_for_output("ready.", timeout=60)
        return process

    def settle(self, timeout: float = 120) -> None:
        """Before a timed run: PostgreSQL's upkeep after the previous run (autovacuum of the rows it
        updated, the checkpoint) done now, so it takes no CPU from whatever is measured next.
        Without this, a baseline measured right after a jobqueue or Procrastinate run shared the
        two cores with the vacuum of that run's rows."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("CHECKPOINT")

        def quiet() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
                return cursor.fetchone()[0] == 0

        servers.wait_for(quiet, timeout=timeout, what="autovacuum to finish", interval=0.2)

    def stop_processes(self) -> None:
        """Stop every jobqueue process, e.g. before a baseline that uses the same queue names."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def stop(self) -> None:
        self.stop_processes()
        from django.db import connections

        connections.close_all()
        self.redis.stop()
        self.postgres.stop()


@contextmanager
def running_stack():
    stack = Stack()
    try:
        yield stack.start()
    finally:
        stack.stop()


def machine() -> dict:
    import celery
    import django

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
