"""The scrape endpoint of processes other than the web app (worker nodes, the mover).

`GET /metrics` is prometheus_client's own WSGI app over a registry (with its content negotiation and
compression); `GET /healthz` answers 200 or 503 with what the process's `health` callable reports,
so the same port serves Prometheus and a liveness probe."""

import json
import logging
import socket
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("jobqueue.metrics")

Health = Callable[[], tuple[bool, dict]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per scrape would drown the process's own log


def _app(registry: CollectorRegistry, health: Health) -> Callable:
    metrics = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["PATH_INFO"] == "/metrics":
            return metrics(environ, start_response)
        if environ["PATH_INFO"] == "/healthz":
            healthy, report = health()
            start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps(report).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


def serve(*, name: str, addr: str, port: int, registry: CollectorRegistry, health: Health) -> WSGIServer | None:
    """Serve /metrics and /healthz on a daemon thread; None (and an error logged) if the port is taken."""
    server_class = _Server6 if ":" in addr else _Server
    try:
        server = make_server(addr, port, _app(registry, health), server_class, handler_class=_Quiet)
    except OSError as exc:
        log.error("%s: no metrics endpoint on %s port %s: %s", name, addr, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name=f"{name}-metrics", daemon=True).start()
    log.info("%s: metrics on http://%s:%s/metrics, liveness on /healthz", name, addr, port)
    return server
