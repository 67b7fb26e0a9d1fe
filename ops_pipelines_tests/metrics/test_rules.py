"""The Prometheus configuration and alert rules in deploy/prometheus/: valid for promtool, each
alert's unit tests pass (alerts.test.yml), each links to its section of docs/metrics.md and uses
only metrics the endpoint exposes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from ops_pipelines_tests.conftest import system_program

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"


def promtool() -> str:
    return system_program("promtool", "prometheus")


def run_promtool(*args: str) -> str:
    result = subprocess.run([promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_checks_the_rules_and_the_config():
    assert "SUCCESS: 8 rules found" in run_promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert "is valid prometheus config file syntax" in run_promtool("check", "config", "deploy/prometheus/prometheus.yml")


def test_promtool_unit_tests_of_the_alerts_pass():
    assert "SUCCESS" in run_promtool("test", "rules", "deploy/prometheus/alerts.test.yml")


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_every_alert_is_unit_tested_and_links_to_its_runbook_section():
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    docs = (REPO / "docs" / "metrics.md").read_text()
    # GitHub's anchors: a heading lower-cased, without punctuation, spaces as dashes
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    for rule in _rules():
        name = rule["alert"]
        assert name in tested, f"{name} has no unit test that makes it fire"
        assert rule["labels"]["severity"] in ("warning", "critical")
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/metrics.md" and anchor == name.lower(), rule["annotations"]["runbook_url"]
        assert anchor in anchors, f"docs/metrics.md has no section {name}"


def test_the_alerts_use_only_metrics_the_endpoint_exposes_and_the_docs_list_them_all():
    collector = (REPO / "ops_pipelines" / "metrics" / "collector.py").read_text()
    families = set(re.findall(r'"(ops_[a-z_]+)"', collector))
    info = set(re.findall(r'InfoMetricFamily\(\s*"(ops_[a-z_]+)"', collector))
    exposed = (families - info) | {f"{name}_info" for name in info}
    assert "ops_container_live_info" in exposed
    used = {name for rule in _rules() for name in re.findall(r"\bops_[a-z_]+\b", rule["expr"])}
    assert used and used <= exposed, f"not exposed: {used - exposed}"
    docs = (REPO / "docs" / "metrics.md").read_text()
    assert not {name for name in exposed if f"`{name}" not in docs}, "docs/metrics.md does not list every metric"
