"""RateLimitMonitor: metric values, the 70 % Slack alert with cooldown, and a sick Slack never blocking.
Slack is a local HTTP receiver recording the POSTed bodies (the real Slack is unreachable here)."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from methtrader.exchange.bybit.limits import LimitStatus
from methtrader.exchange.bybit.monitor import RateLimitMonitor
from methtrader.ops.alerts import SlackNotifier
from support.redis_server import free_port
from support.secrets import WEBHOOK_TOKEN, webhook_url

from .fakes import SlackReceiver

CREATE = "/v5/order/create"


class Ticks:
    """A monotonic clock the test moves by hand (for the alert cooldown)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value(monitor: RateLimitMonitor, name: str, **labels: str) -> float | None:
    return monitor.registry.get_sample_value(name, labels)


def wait_for(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_metrics_after_observations() -> None:
    monitor = RateLimitMonitor()
    monitor.observe(f"https://api.bybit.com{CREATE}?symbol=BTCUSDT", LimitStatus(10, 4, None), 0, 200, 0.05)
    monitor.observe(CREATE, LimitStatus(10, 0, None), 10006, 200, 0.02)
    monitor.observe("/v5/order/cancel", None, None, 403, None)
    monitor.observe("/v5/order/1234567", LimitStatus(50, 49, None))
    monitor.observe_wait(CREATE, 0.4)

    assert value(monitor, "methtrader_bybit_rate_limit", endpoint=CREATE) == 10
    assert value(monitor, "methtrader_bybit_rate_limit_remaining", endpoint=CREATE) == 0
    assert value(monitor, "methtrader_bybit_rate_limit_utilisation", endpoint=CREATE) == 1.0
    assert value(monitor, "methtrader_bybit_rate_limited_total", endpoint=CREATE) == 1
    assert value(monitor, "methtrader_bybit_ip_banned_total", endpoint="/v5/order/cancel") == 1
    assert value(monitor, "methtrader_bybit_request_latency_seconds_count", endpoint=CREATE) == 2
    assert value(monitor, "methtrader_bybit_request_latency_seconds_sum", endpoint=CREATE) == pytest.approx(
        0.07
    )
    assert value(monitor, "methtrader_bybit_governor_wait_seconds_count", endpoint=CREATE) == 1
    assert value(
        monitor, "methtrader_bybit_rate_limit_utilisation", endpoint="/v5/order/:id"
    ) == pytest.approx(0.02)
    labels = {s.labels.get("endpoint") for m in monitor.registry.collect() for s in m.samples}
    assert "/v5/order/1234567" not in labels
    assert all(label is None or "?" not in label for label in labels)


def test_each_monitor_has_its_own_registry() -> None:
    first, second = RateLimitMonitor(), RateLimitMonitor()
    first.observe(CREATE, LimitStatus(10, 9, None))
    assert value(second, "methtrader_bybit_rate_limit", endpoint=CREATE) is None


def test_70_percent_alert_is_posted_once_per_cooldown(slack: SlackReceiver) -> None:
    ticks = Ticks()
    monitor = RateLimitMonitor(slack.url, cooldown_s=300.0, clock=ticks)
    try:
        monitor.observe(CREATE, LimitStatus(10, 4, None))  # 60 %: quiet
        monitor.observe(CREATE, LimitStatus(10, 3, None))  # 70 %: alert
        monitor.observe(CREATE, LimitStatus(10, 1, None))  # 90 %: same endpoint, within cooldown
        monitor.observe("/v5/order/cancel", LimitStatus(10, 2, None))  # another endpoint: its own alert
        assert monitor.flush(5.0)
        texts = sorted(body["text"] for body in slack.bodies)
        assert len(texts) == 2
        assert "/v5/order/cancel" in texts[0] and "80%" in texts[0]
        assert CREATE in texts[1] and "70%" in texts[1] and "3/10" in texts[1]
        assert value(monitor, "methtrader_alerts_suppressed_total", kind="rate_limit") == 1
        assert value(monitor, "methtrader_alerts_sent_total", kind="rate_limit") == 2

        ticks.now += 301
        monitor.observe(CREATE, LimitStatus(10, 2, None))
        assert monitor.flush(5.0)
        assert len(slack.bodies) == 3
    finally:
        monitor.close()


@pytest.mark.parametrize("failure", ["refused", "http_500", "slow"])
def test_sick_slack_never_blocks_observe_and_is_counted(
    failure: str, slack: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = slack.url
    if failure == "refused":
        url = webhook_url(free_port())
    elif failure == "http_500":
        slack.status = 500
    else:
        slack.delay_s = 2.0
    monitor = RateLimitMonitor(url, timeout_s=0.3, cooldown_s=0.0)
    try:
        durations = []
        for remaining in (3, 2, 1, 0, 0, 0):
            start = time.perf_counter()
            monitor.observe(CREATE, LimitStatus(10, remaining, None), 0, 200, 0.01)
            durations.append(time.perf_counter() - start)
        assert max(durations) < 0.005, durations
        reason = {"refused": "connect", "http_500": "http_5xx", "slow": "timeout"}[failure]
        failures = "methtrader_alert_failures_total"
        assert wait_for(lambda: (value(monitor, failures, reason=reason) or 0) >= 1, 5.0)
        assert value(monitor, "methtrader_alerts_sent_total", kind="rate_limit") == 0
        assert value(monitor, "methtrader_bybit_rate_limit_utilisation", endpoint=CREATE) == 1.0
    finally:
        monitor.close(0.1)
    assert WEBHOOK_TOKEN not in caplog.text
    assert "Slack alert delivery failed" in caplog.text


def test_full_alert_queue_drops_and_counts_without_blocking(slack: SlackReceiver) -> None:
    slack.delay_s = 1.0
    monitor = RateLimitMonitor(slack.url, timeout_s=0.2, queue_size=1, cooldown_s=0.0)
    try:
        start = time.perf_counter()
        for i in range(20):
            monitor.notify(f"k{i}", "budget low")
        assert time.perf_counter() - start < 0.05
        assert (value(monitor, "methtrader_alert_failures_total", reason="queue_full") or 0) >= 15
    finally:
        monitor.close(0.1)


def test_without_webhook_alerts_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    monitor = RateLimitMonitor(None)
    assert monitor.notify("k", "budget low") is False
    assert "budget low" in caplog.text
    assert "webhook=none" in repr(monitor)


def test_webhook_url_is_redacted_from_http_client_logs(
    slack: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monitor = RateLimitMonitor(slack.url)
    try:
        monitor.notify("k", "budget low")
        assert monitor.flush(5.0)
        assert slack.bodies and "budget low" in slack.bodies[0]["text"]
    finally:
        monitor.close()
    assert 'HTTP Request: POST <redacted> "HTTP/1.0 200 OK"' in caplog.text  # httpx's line, URL masked
    assert WEBHOOK_TOKEN not in caplog.text
    assert WEBHOOK_TOKEN not in repr(monitor)


def test_a_shared_notifier_carries_the_alerts_and_outlives_the_monitor(slack: SlackReceiver) -> None:
    registry = CollectorRegistry()
    notifier = SlackNotifier(slack.url, registry=registry)
    monitor = RateLimitMonitor(registry=registry, notifier=notifier)
    try:
        monitor.observe(CREATE, LimitStatus(10, 1, None))
        monitor.close()  # the process's notifier stays open for incidents and liquidations
        assert notifier.incident("stream gap")
        assert notifier.flush(5.0)
        heads = sorted(text.split(" [")[0] for text in slack.texts)
        assert heads == [":rotating_light: INCIDENT", ":warning: RATE LIMIT"]
        assert registry.get_sample_value("methtrader_alerts_sent_total", {"kind": "rate_limit"}) == 1
    finally:
        notifier.close()
    with pytest.raises(ValueError, match="either"):
        RateLimitMonitor(slack.url, notifier=notifier)
