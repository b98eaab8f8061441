"""Prometheus: the rules and the config pass promtool, every alert is unit-tested firing and not
firing, carries severity, summary, description and a runbook link that resolves, and uses only
metrics the process exposes."""

import re
from collections import defaultdict
from typing import Any

import pytest
import yaml

from deploy.exposition import Exposition
from deploy.paths import DEPLOY, RUNBOOK, RUNBOOK_URL, output, run
from deploy.promql import metric_names

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings (lower case, punctuation dropped, spaces to -)."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES.relative_to(DEPLOY.parent)))
    assert result.returncode == 0, output(result)
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_unit_tests_pass_promtool(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULE_TESTS.relative_to(DEPLOY.parent)))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout


def test_config_passes_promtool_from_the_repository(promtool: str) -> None:
    result = run(promtool, "check", "config", str(CONFIG.relative_to(DEPLOY.parent)))
    assert result.returncode == 0, output(result)
    assert "is valid prometheus config file syntax" in result.stdout


def test_config_scrapes_methtrader_loads_the_rules_and_alerts_alertmanager() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["methtrader"]["static_configs"] == [{"targets": ["methtrader:9464"]}]
    assert config["rule_files"] == ["alerts.yml"]  # relative: valid from the repository and in the container
    targets = [
        t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]


def test_every_alert_has_severity_summary_description_and_a_runbook_anchor() -> None:
    anchors = runbook_anchors()
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) >= 12
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == RUNBOOK_URL, name
        assert anchor in anchors, f"{name}: no heading for #{anchor} in docs/RUNBOOK.md"


def test_every_alert_is_unit_tested_firing_and_not_firing_at_each_severity() -> None:
    fired: dict[str, set[str]] = defaultdict(set)
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            if check.get("exp_alerts"):
                fired[name].update(alert["exp_labels"]["severity"] for alert in check["exp_alerts"])
            else:
                quiet.add(name)
    severities: dict[str, set[str]] = defaultdict(set)
    for rule in alert_rules():
        severities[rule["alert"]].add(rule["labels"]["severity"])
    for name, expected in severities.items():
        assert fired[name] == expected, (
            f"{name}: firing tested at {sorted(fired[name])}, rules {sorted(expected)}"
        )
        assert name in quiet, f"{name}: no test where it does not fire"


@pytest.mark.live_metrics
def test_alerts_use_only_metrics_the_process_exposes(exposition: Exposition) -> None:
    # `up` is made by Prometheus; process_* come from prometheus_client's process collector,
    # which exports nothing where /proc is missing (the restart rule has a counter-reset fallback).
    missing: dict[str, set[str]] = defaultdict(set)
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            if name not in exposition.names and name != "up" and not name.startswith("process_"):
                missing[name].add(rule["alert"])
    report = "\n".join(f"  {name}  ({', '.join(sorted(alerts))})" for name, alerts in sorted(missing.items()))
    assert not missing, f"alerts.yml uses {len(missing)} metrics `methtrader run` does not expose:\n{report}"
