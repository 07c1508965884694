"""deploy/prometheus: the alert rules pass promtool, fire as their unit tests say, and cover
what operators must hear about."""

import re
import subprocess

import pytest
import yaml

from tests import servers
from tests.deploy.project import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
RULES = [rule for group in ALERTS["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    return servers.require_binary("promtool", "prometheus")


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_passes(promtool):
    done = run(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout


def test_alerts_fire_and_stay_quiet_as_their_unit_tests_say(promtool):
    done = run(promtool, "test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_compose_prometheus_config_is_valid_and_finds_the_rules(promtool):
    done = run(promtool, "check", "config", "prometheus-compose.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout


def test_alerts_cover_latency_dead_letters_workers_and_failures():
    expressions = {rule["alert"]: rule["expr"] for rule in RULES}
    watched = {
        "queue_latency_seconds": "queue latency",
        "dead_letter_size": "dead-letter growth",
        "workers_online": "no workers",
        "jobs_failed_total": "failure ratio",
        "jobs_processed_total": "failure ratio",
    }
    for metric, what in watched.items():
        assert any(re.search(rf"\b{metric}\b", expr) for expr in expressions.values()), f"no alert on {what}"
    for rule in RULES:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_alert_has_unit_tests_and_a_runbook_section():
    cases = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check.get("exp_alerts")}
    assert tested == {rule["alert"] for rule in RULES}, "every alert must be shown to fire"
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "operations.md").read_text(), flags=re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for rule in RULES:
        document, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert document == "docs/operations.md" and anchor in anchors, f"{rule['alert']}: no section #{anchor}"
