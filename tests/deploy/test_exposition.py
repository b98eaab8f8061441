"""What a real paper session serves on /metrics: Prometheus naming conventions and labels that are
fixed, low-cardinality codes — never the id of a user, order or trade."""

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.exposition import Exposition

ALLOWED_LABELS = {
    "endpoint", "stream", "status", "reason", "cause", "kind", "symbol",  # our codes
    "version", "commit", "dirty",  # build info
    "le", "quantile",  # histograms and summaries
    "generation", "implementation", "major", "minor", "patchlevel",  # the python_* collectors
}  # fmt: skip
ID_LIKE = re.compile(r"^(mt-)?[0-9a-f]{8}-?[0-9a-f]{4}|^mt-[0-9a-f]{16,}|^E\d+$")


@pytest.mark.live_metrics
def test_every_label_is_a_fixed_low_cardinality_code(exposition: Exposition) -> None:
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition.text):
        assert family.name.startswith(("methtrader_", "process_", "python_")), family.name
        for sample in family.samples:
            for label, value in sample.labels.items():
                values.setdefault(label, set()).add(value)
    assert set(values) <= ALLOWED_LABELS, set(values) - ALLOWED_LABELS
    for label, seen in values.items():
        if label == "commit":
            continue  # one value per process: the git SHA of the code
        assert not [v for v in seen if ID_LIKE.match(v)], (label, seen)
        assert len(seen) <= 25, (label, len(seen))


@pytest.mark.live_metrics
def test_counters_and_units_follow_prometheus_conventions(exposition: Exposition) -> None:
    for family in text_string_to_metric_families(exposition.text):
        if not family.name.startswith("methtrader_"):
            continue
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name  # base unit
        assert not re.search(r"_(ms|milliseconds|minutes)$", family.name), family.name
