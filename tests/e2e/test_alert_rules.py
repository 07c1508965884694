"""A real Prometheus loads deploy/prometheus/alerts.yml, scrapes jobqueue's metric names and
evaluates the rules: the alerts the numbers call for go pending, the others stay inactive."""

import http.server
import threading
import time

import pytest
import requests
import yaml

from tests import servers
from tests.deploy.project import ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# What a system with no worker online and a `high` job waiting two minutes exports.
EXPOSITION = b"""\
# TYPE workers_online gauge
workers_online 0
# TYPE queue_depth gauge
queue_depth{queue="high"} 12
queue_depth{queue="medium"} 0
queue_depth{queue="low"} 0
# TYPE queue_latency_seconds gauge
queue_latency_seconds{queue="high"} 120
queue_latency_seconds{queue="medium"} 0
queue_latency_seconds{queue="low"} 0
# TYPE dead_letter_size gauge
dead_letter_size 4
# TYPE jobs_processed_total counter
jobs_processed_total{type="noop",queue="medium"} 50
# TYPE jobs_failed_total counter
jobs_failed_total{type="noop",queue="medium"} 1
"""


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(EXPOSITION)

    def log_message(self, *args):
        pass


@pytest.fixture
def exporter():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", servers.free_port()), _Exporter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus(exporter):
    binary = servers.require_binary("prometheus", "prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "web", "static_configs": [{"targets": [exporter]}]}],
    }
    # PrometheusServer waits for /-/ready: an open port alone may still answer its API with an error page.
    server = servers.PrometheusServer(binary, yaml.safe_dump(config))
    server.start()
    yield server.url
    server.stop()


def rule_states(url: str) -> dict[str, tuple[str, str]]:
    groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return {rule["name"]: (rule["health"], rule.get("state", "")) for g in groups for rule in g["rules"]}


def test_prometheus_loads_the_alert_rules_and_evaluates_them(prometheus):
    expected = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    deadline = time.monotonic() + 60
    states: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        states = rule_states(prometheus)
        if states.get("JobqueueNoWorkers", ("", ""))[1] == "pending" and (
            states.get("JobqueueHighPriorityLatency", ("", ""))[1] == "pending"
        ):
            break
        time.sleep(0.5)
    assert set(states) == expected
    assert {health for health, _ in states.values()} == {"ok"}, states
    assert states["JobqueueNoWorkers"][1] == "pending", states
    assert states["JobqueueHighPriorityLatency"][1] == "pending", states
    for quiet in ("JobqueueQueueLatency", "JobqueueDeadLetterGrowing", "JobqueueFailureRatio"):
        assert states[quiet][1] == "inactive", states
    alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    high = [a for a in alerts if a["labels"]["alertname"] == "JobqueueHighPriorityLatency"]
    assert high and high[0]["labels"]["queue"] == "high" and high[0]["labels"]["severity"] == "critical"
