"""Grafana: four provisioned dashboards whose PromQL parses (promtool), whose Loki queries select
only the promoted log labels, and whose every metric is one the running process exposes."""

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.exposition import Exposition
from deploy.paths import DEPLOY, LOG_LABELS, output, run
from deploy.promql import expand_grafana_variables, metric_names

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = ("trading-overview.json", "risk.json", "bybit-rate-limits.json", "system-health.json")
# Series Prometheus itself adds to every scrape: never on /metrics, always queryable.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((GRAFANA / "dashboards" / name).read_text()) for name in DASHBOARDS}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def queries(datasource_type: str) -> Iterator[tuple[str, str, str]]:
    """(dashboard, where, expression) of every query on a data source of this type."""
    for name, board in dashboards().items():
        for variable in board["templating"]["list"]:
            if variable["datasource"]["type"] == datasource_type:
                yield name, f"variable {variable['name']}", variable["query"]["query"]
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource"))["type"] == datasource_type:
                    yield name, f"panel {panel['title']!r}", target["expr"]


def promql() -> list[tuple[str, str, str]]:
    """Prometheus queries; `label_values(metric, label)` of a variable counts as its metric."""
    found = []
    for name, where, expr in queries("prometheus"):
        if expr.startswith("label_values("):
            expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
        found.append((name, where, expr))
    return found


def datasources() -> dict[str, str]:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def test_metric_names_are_found_in_promql() -> None:
    cases = {
        'histogram_quantile(0.99, sum by (endpoint, le) (rate(a_bucket{instance=~"$i"}[$__rate_interval])))':
            {"a_bucket"},
        "time() - b_timestamp_seconds offset 5m > 1e3": {"b_timestamp_seconds"},
        'label_replace(up, "dst", "$1", "src", "(.*)") unless on (job) group_left (x) c:rate5m':
            {"up", "c:rate5m"},
        "sum(rate(d_total[5m])) by (job) / ignoring(le) max without (x) (e) and bool f or g[1h:5m]":
            {"d_total", "e", "f", "g"},
    }  # fmt: skip
    for expr, names in cases.items():
        assert metric_names(expr) == names, expr


def test_four_dashboards_are_provisioned_with_their_data_sources() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "methtrader.yml").read_text())
    (dashboards_provider,) = provider["providers"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == dashboards_provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert sorted(path.name for path in (GRAFANA / "dashboards").glob("*.json")) == sorted(DASHBOARDS)
    assert set(datasources().values()) == {"prometheus", "loki"}


def test_dashboards_are_well_formed() -> None:
    sources = datasources()
    boards = dashboards()
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["title"].startswith("methtrader / ") and "methtrader" in board["tags"], name
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        graphs = [panel for panel in panels(board) if panel["type"] != "row"]
        assert len(graphs) >= 8, name
        for panel in graphs:
            where = f"{name}: {panel['title']}"
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24 and position["h"] > 0, where
            assert panel["targets"], where
            assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), where
            for target in panel["targets"]:
                source = target.get("datasource", panel["datasource"])
                assert sources.get(source["uid"]) == source["type"], f"{where}: unknown data source {source}"


def test_dashboard_promql_parses(promtool: str, tmp_path: Path) -> None:
    """Every query, Grafana variables filled in, as a recording rule through `promtool check rules`."""
    exprs = [expand_grafana_variables(expr) for _, _, expr in promql()]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, output(result)
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_loki_queries_select_only_promoted_labels() -> None:
    found = list(queries("loki"))
    assert found
    for name, where, expr in found:
        selectors = re.findall(r"\{([^{}]*)\}", expr)
        assert selectors, f"{name} {where}: no stream selector in {expr}"
        for selector in selectors:
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            assert labels and labels <= LOG_LABELS, (
                f"{name} {where}: {labels - LOG_LABELS} are not log labels"
            )


@pytest.mark.live_metrics
def test_dashboards_use_only_metrics_the_process_exposes(exposition: Exposition) -> None:
    missing: dict[str, set[str]] = defaultdict(set)
    used = 0
    for name, _, expr in promql():
        for metric in metric_names(expr):
            used += 1
            if metric not in exposition.names and metric not in SCRAPE_SERIES:
                missing[metric].add(name)
    assert used > 50
    report = "\n".join(
        f"  {metric}  ({', '.join(sorted(boards))})" for metric, boards in sorted(missing.items())
    )
    assert not missing, f"dashboards use {len(missing)} metrics `methtrader run` does not expose:\n{report}"
