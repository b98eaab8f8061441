"""Prometheus metrics of Bybit's rate-limit headers and a Slack alert when an endpoint's budget runs low.
Alerts go through ops.alerts.SlackNotifier (bounded queue, background thread): Slack never blocks trading."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from methtrader.exchange.bybit.limits import (
    HTTP_IP_BANNED,
    RETCODE_RATE_LIMITED,
    LimitStatus,
    normalise_endpoint,
)
from methtrader.ops.alerts import AlertKind, SlackNotifier

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class RateLimitMonitor:
    """Per-endpoint gauges (limit, remaining, utilisation), 10006/403 counters and latency histograms.
    ``notify`` and the 70 % utilisation alert post rate-limit alerts to Slack, deduplicated with a cooldown.

    Pass ``notifier`` to share the process's SlackNotifier (its counters live in its own registry);
    otherwise the monitor makes one from ``webhook_url`` in ``registry`` and closes it on ``close``.
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        threshold: float = 0.7,
        cooldown_s: float = 300.0,
        timeout_s: float = 2.0,
        queue_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        source: str = "methtrader",
        notifier: SlackNotifier | None = None,
    ) -> None:
        if notifier is not None and webhook_url:
            raise ValueError("pass either webhook_url or notifier, not both")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.threshold = threshold
        self._owns_notifier = notifier is None
        self.notifier = notifier or SlackNotifier(
            webhook_url,
            registry=self.registry,
            cooldown_s=cooldown_s,
            timeout_s=timeout_s,
            queue_size=queue_size,
            clock=clock,
            transport=transport,
            source=source,
        )

        r = self.registry
        label = ["endpoint"]
        self.limit = Gauge(
            "methtrader_bybit_rate_limit", "X-Bapi-Limit: requests per window", label, registry=r
        )
        self.remaining = Gauge(
            "methtrader_bybit_rate_limit_remaining", "X-Bapi-Limit-Status: requests left", label, registry=r
        )
        self.utilisation = Gauge(
            "methtrader_bybit_rate_limit_utilisation",
            "1 - remaining/limit of the last response",
            label,
            registry=r,
        )
        self.rate_limited = Counter(
            "methtrader_bybit_rate_limited",
            "Responses with retCode 10006 (too many visits)",
            label,
            registry=r,
        )
        self.ip_banned = Counter(
            "methtrader_bybit_ip_banned", "HTTP 403 responses (IP ban)", label, registry=r
        )
        self.latency = Histogram(
            "methtrader_bybit_request_latency_seconds",
            "Request round trip",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wait = Histogram(
            "methtrader_bybit_governor_wait_seconds",
            "Time a request waited for budget",
            label,
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def __repr__(self) -> str:
        return f"RateLimitMonitor(webhook={'configured' if self.notifier.configured else 'none'})"

    # ----------------------------------------------------------------- metrics
    def observe(
        self,
        endpoint: str,
        status: LimitStatus | None,
        ret_code: int | None = 0,
        http_status: int = 200,
        latency_s: float | None = None,
    ) -> None:
        """Record one response; posts the utilisation alert (asynchronously) when it reaches the threshold."""
        label = normalise_endpoint(endpoint)
        if ret_code == RETCODE_RATE_LIMITED:
            self.rate_limited.labels(label).inc()
        if http_status == HTTP_IP_BANNED:
            self.ip_banned.labels(label).inc()
        if latency_s is not None and latency_s >= 0:
            self.latency.labels(label).observe(latency_s)
        if status is None:
            return
        if status.limit is not None:
            self.limit.labels(label).set(status.limit)
        if status.remaining is not None:
            self.remaining.labels(label).set(status.remaining)
        utilisation = status.utilisation
        if utilisation is None:
            return
        self.utilisation.labels(label).set(utilisation)
        if utilisation >= self.threshold:
            self.notify(
                f"utilisation:{label}",
                f"Bybit rate limit {label}: {utilisation:.0%} used "
                f"({status.remaining}/{status.limit} left in the window).",
            )

    def observe_wait(self, endpoint: str, seconds: float) -> None:
        """Record how long the governor held a request back."""
        self.wait.labels(normalise_endpoint(endpoint)).observe(max(0.0, seconds))

    # ----------------------------------------------------------------- alerts
    def notify(self, key: str, text: str) -> bool:
        """Queue a rate-limit alert for Slack unless ``key`` alerted within the cooldown; never blocks.
        Returns True when queued; without a webhook URL the alert is only logged."""
        return self.notifier.notify(key, text, AlertKind.RATE_LIMIT)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert was delivered or failed (for tests and shutdown)."""
        return self.notifier.flush(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the alert delivery thread after the queued alerts (a shared notifier stays open)."""
        if self._owns_notifier:
            self.notifier.close(timeout_s)
