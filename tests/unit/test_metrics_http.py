"""The scrape and liveness endpoint of the worker nodes and the mover, on a real socket."""

import json
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from jobs.adapters import metrics_http


def get(server, path):
    url = f"http://127.0.0.1:{server.server_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics_health_and_anything_else():
    registry = CollectorRegistry()
    Counter("probe_total", "A probe.", registry=registry).inc(3)
    state = {"healthy": True}
    server = metrics_http.serve(
        name="probe", addr="127.0.0.1", port=0, registry=registry, health=lambda: (state["healthy"], dict(state))
    )
    try:
        status, kind, body = get(server, "/metrics")
        assert (status, kind.split(";")[0]) == (200, "text/plain") and b"probe_total 3.0" in body
        assert get(server, "/healthz") == (200, "application/json", b'{"healthy": true}')
        state["healthy"] = False
        status, _, body = get(server, "/healthz")
        assert (status, json.loads(body)) == (503, {"healthy": False})
        assert get(server, "/nothing")[0] == 404
        taken = metrics_http.serve(
            name="second", addr="127.0.0.1", port=server.server_port, registry=registry, health=lambda: (True, {})
        )
        assert taken is None
    finally:
        server.shutdown()
        server.server_close()
