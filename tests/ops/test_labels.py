"""ops.labels: which keys count as labels (our JSON lines, Loki push-style objects, series dumps),
unique values per label, forbidden id-like labels, Loki's own limits, and bad input."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from methtrader.ops.labels import (
    FORBIDDEN_LABELS,
    LabelInputError,
    check_labels,
    is_forbidden,
    normalise_label,
)
from methtrader.ops.logs import LABELS, configure_logging, get_logger


def jsonl(*objects: dict[str, Any]) -> list[str]:
    return [json.dumps(obj) + "\n" for obj in objects]


def line(component: str = "engine", level: str = "info", **body: Any) -> dict[str, Any]:
    return {"timestamp": "2024-01-01T00:00:00Z", "level": level, "event": "e", "app": "methtrader",
            "env": "dev", "component": component, **body}  # fmt: skip


def test_our_own_logs_pass_and_body_ids_are_not_labels() -> None:
    buffer = io.StringIO()
    configure_logging("run", stream=buffer)
    for i in range(200):
        get_logger("engine").info("fill", order_id=f"o-{i}", trade_id=f"t-{i}", qty="0.01")
        get_logger("exchange").warning("slow response", request_id=f"r-{i}")
    report = check_labels(io.StringIO(buffer.getvalue()))
    assert report.ok, report.violations()
    assert report.records == 400
    assert set(report.values) == set(LABELS)
    assert list(report.values["component"]) == ["engine", "exchange"]
    assert list(report.values["level"]) == ["info", "warning"]


def test_unique_values_counted_and_sampled() -> None:
    lines = jsonl(*(line(component=f"c{i % 30}") for i in range(90)))
    report = check_labels(lines)
    summary = report.to_json()
    assert summary["labels"]["component"] == {"unique": 30, "values": ["c0", "c1", "c2", "c3", "c4"]}
    assert summary["labels"]["app"] == {"unique": 1, "values": ["methtrader"]}
    assert summary["ok"] is False and summary["records"] == 90
    assert summary["violations"] == ['label "component" has 30 unique values (at most 25 allowed)']
    assert check_labels(lines, max_values=30).ok


def test_promoted_labels_can_be_overridden() -> None:
    lines = jsonl(line(order_id="o-1", symbol="BTCUSDT"), line(order_id="o-2", symbol="ETHUSDT"))
    assert check_labels(lines).ok
    report = check_labels(lines, promoted=("app", "symbol", "order_id"))
    assert set(report.values) == {"app", "symbol", "order_id"}
    assert report.violations() == [
        'label "order_id" is forbidden: ids, addresses and times belong in the log line, not in labels'
    ]


def test_stream_and_labels_objects_make_every_key_a_label() -> None:
    lines = jsonl(
        {"stream": {"app": "methtrader", "orderLinkId": "t-1"}, "values": [["1", "x"]]},
        {"labels": {"app": "methtrader", "userId": "u-9"}, "line": "y"},
        {"streams": [{"stream": {"app": "methtrader", "ip": "10.0.0.7"}, "values": []}]},
    )
    report = check_labels(lines)
    assert set(report.values) == {"app", "orderLinkId", "userId", "ip"}
    assert [v.split('"')[1] for v in report.violations()] == ["ip", "orderLinkId", "userId"]


def test_loki_series_dump_pretty_printed_or_on_one_line() -> None:
    dump = {
        "status": "success",
        "data": [{"app": "methtrader", "env": "prod", "trade_id": str(i)} for i in range(3)],
    }
    for text in (json.dumps(dump, indent=2), json.dumps(dump)):
        report = check_labels(io.StringIO(text))
        assert report.records == 3
        assert report.to_json()["labels"]["trade_id"]["unique"] == 3
        assert report.violations() == [
            'label "trade_id" is forbidden: ids, addresses and times belong in the log line, not in labels'
        ]


def test_loki_query_result_and_label_limits() -> None:
    wide = {f"l{i}": "v" for i in range(16)}
    result = {
        "status": "success",
        "data": {"resultType": "streams", "result": [{"stream": wide, "values": []}]},
    }
    long_value = {"status": "success", "data": [{"app": "x" * 2049}]}
    assert check_labels([json.dumps(result)]).violations() == [
        "1 lines carry more than 15 labels (up to 16; Loki rejects them)"
    ]
    assert check_labels([json.dumps(long_value)]).violations() == [
        'label "app" has 1 values longer than 2048 characters'
    ]


@pytest.mark.parametrize(
    ("name", "forbidden"),
    [("user_id", True), ("userId", True), ("uid", True), ("order_id", True), ("orderId", True),
     ("order_link_id", True), ("orderLinkId", True), ("trade_id", True), ("tradeId", True),
     ("exec_id", True), ("execId", True), ("request_id", True), ("X-Request-Id", True), ("ip", True),
     ("client_ip", True), ("bybit_uid", True), ("timestamp", True),
     ("app", False), ("env", False), ("component", False), ("level", False), ("symbol", False),
     ("zip", False), ("strategy", False)],
)  # fmt: skip
def test_forbidden_label_names(name: str, forbidden: bool) -> None:
    assert is_forbidden(name) is forbidden


def test_names_are_normalised_to_snake_case() -> None:
    assert normalise_label("orderLinkId") == "order_link_id"
    assert normalise_label("X-Request-Id") == "x_request_id"
    assert {
        "user_id",
        "order_id",
        "order_link_id",
        "trade_id",
        "exec_id",
        "request_id",
        "ip",
    } <= FORBIDDEN_LABELS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty input"),
        ("\n  \n", "empty input"),
        ("not json at all\n", "line 1: not JSON"),
        ('{"app": "x"}\n[1, 2]\n', "line 2: expected a JSON object, got an array"),
        ('{"app": "x"}\n{"app": \n', "line 2: not JSON"),
        ('"just a string"', "expected a JSON object, got a string"),
        ('{"status": "error", "data": [], "error": "bad query"}', "Loki answered status 'error': bad query"),
        ('{"status": "success", "data": [1]}', "data[0]: a label set must be a JSON object"),
        ('{"status": "success", "data": []}', "empty input"),
    ],
)
def test_bad_input_is_one_line_reason(text: str, message: str) -> None:
    with pytest.raises(LabelInputError, match=message.replace("[", r"\[").replace("(", r"\(")) as caught:
        check_labels(io.StringIO(text))
    assert "\n" not in str(caught.value)
