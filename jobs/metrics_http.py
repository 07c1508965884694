"""The scrape endpoint of processes other than the web app (worker nodes, the mover).

`GET /metrics` exports a registry; `GET /healthz` answers 200 or 503 with what the process's
`health` callable reports, so the same port serves Prometheus and a liveness probe.
"""

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("jobqueue.metrics")

Health = Callable[[], tuple[bool, dict]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    health: Health


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, report = self.server.health()
            self._answer(200 if healthy else 503, json.dumps(report).encode(), "application/json")
        else:
            self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per scrape would drown the process's own log


def serve(*, name: str, addr: str, port: int, registry: CollectorRegistry, health: Health) -> _Server | None:
    """Serve /metrics and /healthz on a daemon thread; None (and an error logged) if the port is taken."""
    server_class = _Server6 if ":" in addr else _Server
    try:
        server = server_class((addr, port), _Handler)
    except OSError as exc:
        log.error("%s: no metrics endpoint on %s port %s: %s", name, addr, port, exc)
        return None
    server.registry, server.health = registry, health
    threading.Thread(target=server.serve_forever, name=f"{name}-metrics", daemon=True).start()
    log.info("%s: metrics on http://%s:%s/metrics, liveness on /healthz", name, addr, port)
    return server
