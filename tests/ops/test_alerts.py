"""SlackNotifier against a real local HTTP receiver: kinds in the text, per-key deduplication and its
cooldown, and a Slack that is down, slow or answering 500 never blocking the caller, only counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from methtrader.ops.alerts import FAILURE_REASONS, AlertKind, SlackNotifier
from support.redis_server import free_port
from support.secrets import WEBHOOK_TOKEN, webhook_url
from support.slack import SlackReceiver

from .conftest import JsonLog


class Ticks:
    """A monotonic clock the test moves by hand (for the cooldown)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(notifier: SlackNotifier, name: str, **labels: str) -> float:
    return notifier.registry.get_sample_value(name, labels) or 0.0


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def timed_notify(notifier: SlackNotifier, count: int) -> float:
    """The slowest of ``count`` notify calls with distinct keys, in seconds."""
    worst = 0.0
    for i in range(count):
        start = time.perf_counter()
        notifier.incident(f"stream gap {i}", key=f"gap-{i}")
        worst = max(worst, time.perf_counter() - start)
    return worst


def test_each_kind_is_posted_with_its_kind_in_the_text(slack: SlackReceiver) -> None:
    notifier = SlackNotifier(slack.url, env="paper")
    try:
        assert notifier.incident("private stream gap, reconciling")
        assert notifier.liquidation("guard liquidated BTCUSDT: VaR 6.1% > 5%")
        assert notifier.brake("BRAKE #7 by ann@desk: exchange incident", key="brake-7")
        assert notifier.rate_limit("/v5/order/create 80% used")
        assert notifier.flush(5.0)
    finally:
        notifier.close()
    texts = sorted(slack.texts)
    assert len(texts) == 4
    assert any(t.startswith(":rotating_light: INCIDENT [methtrader/paper] private stream gap") for t in texts)
    assert any(t.startswith(":boom: LIQUIDATION [methtrader/paper] guard liquidated") for t in texts)
    assert any(t.startswith(":octagonal_sign: BRAKE [methtrader/paper] BRAKE #7") for t in texts)
    assert any(t.startswith(":warning: RATE LIMIT [methtrader/paper] /v5/order/create") for t in texts)
    for kind in AlertKind:
        assert sample(notifier, "methtrader_alerts_sent_total", kind=kind.value) == 1
    assert all(path.endswith(WEBHOOK_TOKEN) for path in slack.paths)


def test_same_key_is_deduplicated_per_kind_until_the_cooldown_expires(slack: SlackReceiver) -> None:
    ticks = Ticks()
    notifier = SlackNotifier(slack.url, cooldown_s=300.0, clock=ticks)
    try:
        assert notifier.notify("db", "database down", AlertKind.INCIDENT)
        assert not notifier.notify("db", "database still down", AlertKind.INCIDENT)  # same kind and key
        assert notifier.notify("db", "database: brake", AlertKind.BRAKE)  # same key, another kind
        ticks.now += 299.9
        assert not notifier.notify("db", "database down again", AlertKind.INCIDENT)
        assert notifier.flush(5.0)
        assert sorted(t.split("] ", 1)[1] for t in slack.texts) == ["database down", "database: brake"]
        assert sample(notifier, "methtrader_alerts_suppressed_total", kind="incident") == 2

        ticks.now += 0.1  # 300 s after the first alert: the cooldown is over
        assert notifier.notify("db", "database down again", AlertKind.INCIDENT)
        assert notifier.flush(5.0)
        assert len(slack.bodies) == 3 and slack.texts[-1].endswith("database down again")
        assert sample(notifier, "methtrader_alerts_sent_total", kind="incident") == 2
    finally:
        notifier.close()


def test_receiver_down_is_counted_and_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = SlackNotifier(webhook_url(free_port()), timeout_s=0.5, cooldown_s=0.0)  # nobody listens
    try:
        assert timed_notify(notifier, 10) < 0.05
        assert wait_for(lambda: sample(notifier, "methtrader_alert_failures_total", reason="connect") >= 10)
        assert sample(notifier, "methtrader_alerts_sent_total", kind="incident") == 0
    finally:
        notifier.close(0.5)
    assert "Slack alert delivery failed" in caplog.text
    assert WEBHOOK_TOKEN not in caplog.text


def test_slow_receiver_times_out_without_blocking_the_caller(slack: SlackReceiver) -> None:
    slack.delay_s = 0.5
    notifier = SlackNotifier(slack.url, timeout_s=0.1, cooldown_s=0.0)
    try:
        assert timed_notify(notifier, 3) < 0.05
        assert wait_for(lambda: sample(notifier, "methtrader_alert_failures_total", reason="timeout") >= 1)
        assert sample(notifier, "methtrader_alerts_sent_total", kind="incident") == 0
    finally:
        start = time.perf_counter()
        notifier.close(0.2)
        assert time.perf_counter() - start < 1.0  # shutdown does not wait out a sick Slack either


def test_http_500_is_a_failure_not_a_delivery(slack: SlackReceiver) -> None:
    slack.status = 500
    notifier = SlackNotifier(slack.url, cooldown_s=0.0)
    try:
        assert timed_notify(notifier, 3) < 0.05
        assert notifier.flush(5.0)
    finally:
        notifier.close()
    assert len(slack.bodies) == 3  # Slack received them, and said no
    assert sample(notifier, "methtrader_alert_failures_total", reason="http_5xx") == 3
    assert sample(notifier, "methtrader_alerts_sent_total", kind="incident") == 0


def test_full_queue_drops_and_counts(slack: SlackReceiver) -> None:
    slack.delay_s = 0.5
    notifier = SlackNotifier(slack.url, timeout_s=0.1, queue_size=2, cooldown_s=0.0)
    try:
        assert timed_notify(notifier, 20) < 0.05
        assert sample(notifier, "methtrader_alert_failures_total", reason="queue_full") >= 15
    finally:
        notifier.close(0.2)


def test_without_webhook_alerts_are_logged_only() -> None:
    json_log = JsonLog()
    notifier = SlackNotifier(None)
    assert not notifier.configured and "webhook=none" in repr(notifier)
    assert notifier.liquidation("guard liquidated ETHUSDT", key="liq-1") is False
    [line] = json_log.lines()
    assert (line["event"], line["level"], line["component"]) == ("alert", "error", "alerts")
    assert (line["kind"], line["key"], line["text"]) == ("liquidation", "liq-1", "guard liquidated ETHUSDT")


def test_counters_live_in_the_given_registry_with_every_series_present() -> None:
    registry = CollectorRegistry()
    SlackNotifier(None, registry=registry)
    exposition = generate_latest(registry).decode()
    for kind in AlertKind:
        assert f'methtrader_alerts_sent_total{{kind="{kind.value}"}} 0.0' in exposition
        assert f'methtrader_alerts_suppressed_total{{kind="{kind.value}"}} 0.0' in exposition
    for reason in FAILURE_REASONS:
        assert f'methtrader_alert_failures_total{{reason="{reason}"}} 0.0' in exposition


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        SlackNotifier(None).notify("k", "text", "order-42")


def test_webhook_url_never_reaches_a_log_line(slack: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    json_log = JsonLog()
    caplog.set_level(logging.DEBUG)
    notifier = SlackNotifier(slack.url)
    try:
        notifier.incident(f"test alert posted to {slack.url}")  # even a careless caller's text
        assert notifier.flush(5.0)
    finally:
        notifier.close()
    assert slack.bodies
    events = [(line.get("logger"), line["event"], line.get("text")) for line in json_log.lines()]
    assert ("httpx", 'HTTP Request: POST <redacted> "HTTP/1.0 200 OK"', None) in events  # httpx's own line
    assert (None, "alert", "test alert posted to <redacted>") in events
    assert WEBHOOK_TOKEN not in json_log.text and WEBHOOK_TOKEN not in caplog.text
    assert WEBHOOK_TOKEN not in repr(notifier)
