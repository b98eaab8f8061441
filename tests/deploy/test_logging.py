"""Logs: Alloy (and the legacy Promtail) promote exactly app, env, component and level to Loki labels,
never user_id, keep ids as structured metadata and drop oversized lines; Loki's per-tenant limits
fit that label set. Alloy and Loki cannot be installed here, so the files are parsed, not run."""

import re
from typing import Any

import yaml

from deploy.alloy import Block, Ref, parse, references
from deploy.paths import DEPLOY, LOG_LABELS

ALLOY = DEPLOY / "alloy" / "config.alloy"
PROMTAIL = DEPLOY / "promtail" / "promtail.yml"
LIMITS = DEPLOY / "loki" / "limits.yml"
IDS = {"trade_id", "order_link_id", "order_id", "exec_id"}
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def size(text: str) -> int:
    """'16KB' -> 16384 (Loki and Alloy sizes are powers of 1024)."""
    number, unit = re.fullmatch(r"(\d+)\s*([KMG]?B)", text.strip().upper()).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def alloy() -> Block:
    return parse(ALLOY.read_text())


def pipeline() -> Block:
    (process,) = [block for block in alloy().blocks if block.name == "loki.process"]
    return process


def promtail_stages() -> list[dict[str, Any]]:
    jobs = yaml.safe_load(PROMTAIL.read_text())["scrape_configs"]
    stages = [job["pipeline_stages"] for job in jobs]
    assert all(s == stages[0] for s in stages), "every Promtail job runs the same pipeline"
    return stages[0]


def promtail_stage(name: str) -> Any:
    (found,) = [stage[name] for stage in promtail_stages() if name in stage]
    return found


def tenant_limits() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(LIMITS.read_text())["overrides"]


def test_alloy_parses_and_wires_sources_through_the_pipeline_to_loki() -> None:
    root = alloy()
    components = {f"{block.name}.{block.label}" for block in root.blocks}
    assert {"discovery.docker.methtrader", "loki.source.docker.methtrader", "loki.source.file.methtrader",
            "loki.process.methtrader", "loki.write.loki"} <= components  # fmt: skip
    for block in root.blocks:
        for ref in references(block.attributes):
            assert any(ref.startswith(f"{component}.") for component in components), f"{block.name}: {ref}"
    sources = [block for block in root.blocks if block.name.startswith("loki.source.")]
    assert all(
        block.attributes["forward_to"] == [Ref("loki.process.methtrader.receiver")] for block in sources
    )
    assert pipeline().attributes["forward_to"] == [Ref("loki.write.loki.receiver")]
    (write,) = [block for block in root.blocks if block.name == "loki.write"]
    assert write.one("endpoint").attributes["url"] == "http://loki:3100/loki/api/v1/push"


def test_alloy_promotes_exactly_the_four_labels_and_never_user_id() -> None:
    stages = pipeline()
    names = [block.name for block in stages.blocks]
    assert set(stages.one("stage.labels").attributes["values"]) == LOG_LABELS
    assert set(stages.one("stage.label_keep").attributes["values"]) == LOG_LABELS
    dropped = stages.one("stage.label_drop").attributes["values"]
    assert "user_id" in dropped and set(dropped) >= IDS
    # labels are set before they are filtered, and the keep-list is the last word
    assert names.index("stage.json") < names.index("stage.labels") < names.index("stage.label_keep")
    assert names[-1] == "stage.label_keep"


def test_alloy_keeps_ids_as_structured_metadata_and_parses_our_json_lines() -> None:
    stages = pipeline()
    metadata = set(stages.one("stage.structured_metadata").attributes["values"])
    assert metadata >= IDS and not metadata & LOG_LABELS and "user_id" not in metadata
    extracted = set(stages.one("stage.json").attributes["expressions"])
    assert LOG_LABELS | metadata | {"timestamp"} <= extracted
    assert stages.one("stage.timestamp").attributes["source"] == "timestamp"


def test_alloy_and_promtail_drop_long_lines_below_lokis_limit() -> None:
    loki_max = min(size(limits["max_line_size"]) for limits in tenant_limits().values())
    (alloy_drop,) = [b.attributes for b in pipeline().all("stage.drop") if "longer_than" in b.attributes]
    assert size(alloy_drop["longer_than"]) < loki_max
    assert size(promtail_stage("drop")["longer_than"]) == size(alloy_drop["longer_than"])
    assert pipeline().blocks[0].name == "stage.drop"  # before any parsing work


def test_promtail_matches_alloy() -> None:
    assert set(promtail_stage("labels")) == LOG_LABELS
    assert set(promtail_stage("labelallow")) == LOG_LABELS
    assert "user_id" in promtail_stage("labeldrop") and set(promtail_stage("labeldrop")) >= IDS
    assert set(promtail_stage("structured_metadata")) == set(
        pipeline().one("stage.structured_metadata").attributes["values"]
    )
    assert set(promtail_stage("json")["expressions"]) == set(
        pipeline().one("stage.json").attributes["expressions"]
    )
    order = [next(iter(stage)) for stage in promtail_stages()]
    assert order[-1] == "labelallow" and order.index("json") < order.index("labels")


def test_loki_limits_fit_the_label_set() -> None:
    overrides = tenant_limits()
    assert "fake" in overrides  # the tenant of a single-tenant Loki
    for tenant, limits in overrides.items():
        assert len(LOG_LABELS) <= limits["max_label_names_per_series"] <= 15, tenant
        assert 0 < limits["max_global_streams_per_user"] <= 5000, tenant
        assert 0 < size(limits["per_stream_rate_limit"]) <= size(limits["per_stream_rate_limit_burst"]), (
            tenant
        )
        assert 0 < limits["ingestion_rate_mb"] <= limits["ingestion_burst_size_mb"], tenant
        assert size(limits["max_line_size"]) <= 256 * 1024 and limits["max_line_size_truncate"] is False, (
            tenant
        )
        assert limits["allow_structured_metadata"] is True, tenant
        metadata = set(pipeline().one("stage.structured_metadata").attributes["values"])
        assert len(metadata) <= limits["max_structured_metadata_entries_count"], tenant
