"""A gate in front of Flower: its login, throttled per client address, and no framing of its pages.

Flower 2.2 checks a basic-auth login on every request but never slows a guesser down, and its pages
carry no X-Frame-Options. The gate listens where Flower is expected, checks the login itself, and
relays what passes to Flower (on a private loopback port, or over the compose or pod network) with a
credential only the gate knows (so nothing reaches Flower around it). The address is the client's as
the API's rate limits see it (jobs/adapters/addresses.py: X-Forwarded-For only through JOB_TRUSTED_PROXIES).
Failed logins from one address within JOB_LOGIN_LOCKOUT_SECONDS (the window opens with the first
failure) lock that address out after JOB_LOGIN_MAX_FAILURES, even with the right password, until the
window ends: the admin login's rule. A request without credentials (a browser's first one) is not a
failure. Every answer says `X-Frame-Options: DENY` and `frame-ancestors 'none'`. Flower's health and
metrics paths stay open, as Flower keeps them. Run by `manage.py run_flower_gate`, in `make run`,
docker-compose.yml and deploy/k8s (docs/operations.md, "Flower in production")."""

import base64
import hmac
import http.client
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jobs.adapters.addresses import client_address

log = logging.getLogger("jobqueue.flower")

OPEN_PATHS = frozenset({"/healthcheck", "/metrics"})
# Hop-by-hop headers (RFC 9110 7.6.1) are the gate's own on each side; the login is the gate's too.
NOT_RELAYED = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "authorization", "content-length"}
)  # fmt: skip
# The gate's answer says its own Server and Date (http.server's send_response): Flower's are not sent twice.
ANSWERED_BY_GATE = NOT_RELAYED | {"server", "date"}
# How long a request waits for a Flower that refuses connections (still starting) before a 502.
STARTING_SECONDS = 30.0
FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


@dataclass
class LoginFailures:
    """Failed logins per address in a window that opens with the first; thread-safe."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _opened: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def locked_for(self, address: str) -> float:
        """Seconds `address` stays locked out; 0 when it may try."""
        with self._lock:
            opened, count = self._opened.get(address, (0.0, 0))
            left = opened + self.window - self.clock()
            if left <= 0:
                self._opened.pop(address, None)
                return 0.0
            return left if count >= self.limit else 0.0

    def count(self, address: str) -> int:
        """Count a failure; the failures in the address's window so far."""
        with self._lock:
            now = self.clock()
            opened, count = self._opened.get(address, (now, 0))
            if opened + self.window <= now:
                opened, count = now, 0
            if len(self._opened) >= 10_000:  # many addresses: forget the ones whose window ended
                self._opened = {key: kept for key, kept in self._opened.items() if kept[0] + self.window > now}
            self._opened[address] = (opened, count + 1)
            return count + 1


@dataclass(frozen=True)
class Gate:
    login: str  # user:password clients must give
    upstream_port: int  # Flower's
    upstream_login: str  # user:password Flower was started with
    failures: LoginFailures
    upstream_host: str = "127.0.0.1"  # Flower's: loopback in development, its service's name in compose

    def allows(self, authorization: str | None) -> bool | None:
        """None: no credentials given; else whether they are the login."""
        if not authorization:
            return None
        scheme, _, encoded = authorization.partition(" ")
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            return False
        return scheme.lower() == "basic" and hmac.compare_digest(given, self.login.encode())


def basic(login: str) -> str:
    return "Basic " + base64.b64encode(login.encode()).decode()


class GateHandler(BaseHTTPRequestHandler):
    gate: Gate
    server_version = "jobqueue-flower-gate"

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # the client went away mid-answer
            self.close_connection = True

    def do_request(self) -> None:
        address = self.client()
        if self.path.split("?", 1)[0] not in OPEN_PATHS and not self.logged_in(address):
            return
        self.relay()

    def client(self) -> str:
        """The address failures count against: X-Forwarded-For only through JOB_TRUSTED_PROXIES."""
        meta = {"REMOTE_ADDR": self.client_address[0]}
        if forwarded := self.headers.get_all("X-Forwarded-For"):
            meta["HTTP_X_FORWARDED_FOR"] = ",".join(forwarded)  # several headers: one list, as WSGI joins them
        return client_address(meta)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_request

    def logged_in(self, address: str) -> bool:
        gate = self.gate
        if wait := gate.failures.locked_for(address):
            minutes = max(1, round(wait / 60))
            self.answer(429, f"Too many failed logins from your address; try again in up to {minutes} minutes.\n",
                        {"Retry-After": str(int(wait) + 1)})  # fmt: skip
            return False
        allowed = gate.allows(self.headers.get("Authorization"))
        if allowed:
            return True
        if allowed is False:
            failures = gate.failures.count(address)
            log.warning("Flower login failed from %s (%d of %d)", address, failures, gate.failures.limit)
        self.answer(401, "Access denied\n", {"WWW-Authenticate": 'Basic realm="flower"'})
        return False

    def relay(self) -> None:
        raw_length = self.headers.get("Content-Length") or "0"
        if not raw_length.isdigit() or "Transfer-Encoding" in self.headers:
            self.answer(400 if not raw_length.isdigit() else 411, "Content-Length: give the body's length\n", {})
            return
        length = int(raw_length)
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items() if name.lower() not in NOT_RELAYED}
        headers["Authorization"] = basic(self.gate.upstream_login)
        starting = time.monotonic() + STARTING_SECONDS
        while True:
            upstream = http.client.HTTPConnection(self.gate.upstream_host, self.gate.upstream_port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                content = response.read()
                break
            except ConnectionRefusedError:
                if time.monotonic() > starting:
                    self.answer(502, "Flower does not answer\n", {})
                    return
                time.sleep(0.2)  # Flower starts alongside the gate, and takes longer
            except OSError as exc:
                log.warning("Flower does not answer: %s", exc)
                self.answer(502, "Flower does not answer\n", {})
                return
            finally:
                upstream.close()
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in ANSWERED_BY_GATE]
        self.answer(response.status, content, dict(kept), reason=response.reason)

    def answer(self, status: int, content: str | bytes, headers: dict[str, str], reason: str | None = None) -> None:
        data = content.encode() if isinstance(content, str) else content
        own = {name.lower(): value for name, value in headers.items()}
        policy = "; ".join(filter(None, [own.pop("content-security-policy", ""), FRAMING["Content-Security-Policy"]]))
        own |= {"x-frame-options": FRAMING["X-Frame-Options"], "content-security-policy": policy}
        own.setdefault("content-type", "text/plain; charset=utf-8")
        self.send_response(status, reason)
        for name, value in own.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Flower logs the requests it serves; the gate logs only failed logins."""


def serve(gate: Gate, *, address: str, port: int) -> ThreadingHTTPServer:
    """The gate's server, bound and ready; call serve_forever() on it."""
    handler = type("BoundGateHandler", (GateHandler,), {"gate": gate})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server
