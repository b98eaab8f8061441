"""Prometheus metrics of Bybit's rate-limit headers and a Slack alert when an endpoint's budget runs low.
Alerts go through a bounded queue and a background thread, so Slack can never block or fail trading."""

from __future__ import annotations

import logging
import queue
import threading
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

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_STOP = object()
_HTTP_LOGGERS = ("httpx", "httpcore")


class _RedactSecret(logging.Filter):
    """Rewrites log records of the HTTP client that would show the webhook URL (a credential).
    Installed on the httpx/httpcore loggers while a monitor with a webhook exists."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(self._secret in str(a) for a in record.args):
            record.args = tuple("<redacted>" if self._secret in str(a) else a for a in record.args)
        if isinstance(record.msg, str) and self._secret in record.msg:
            record.msg = record.msg.replace(self._secret, "<redacted>")
        return True


class RateLimitMonitor:
    """Per-endpoint gauges (limit, remaining, utilisation), 10006/403 counters and latency histograms.
    ``notify`` and the 70 % utilisation alert post to a Slack webhook, deduplicated with a cooldown."""

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
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._webhook_url = webhook_url or None
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._transport = transport
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._last_alert: dict[str, float] = {}
        self._dedup_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._closed = False

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
        self.alerts_sent = Counter("methtrader_bybit_alerts_sent", "Alerts delivered to Slack", registry=r)
        self.alerts_suppressed = Counter(
            "methtrader_bybit_alerts_suppressed", "Alerts dropped by the per-key cooldown", registry=r
        )
        self.alert_failures = Counter(
            "methtrader_bybit_alert_failures",
            "Alerts that could not be delivered (queue_full, timeout, connect, http_4xx/5xx, error)",
            ["reason"],
            registry=r,
        )
        self._redactor: _RedactSecret | None = None
        if self._webhook_url is not None:
            self._redactor = _RedactSecret(self._webhook_url)
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).addFilter(self._redactor)
            self._ensure_worker()

    def __repr__(self) -> str:
        return f"RateLimitMonitor(webhook={'configured' if self._webhook_url else 'none'})"

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
                f":warning: Bybit rate limit {label}: {utilisation:.0%} used "
                f"({status.remaining}/{status.limit} left in the window).",
            )

    def observe_wait(self, endpoint: str, seconds: float) -> None:
        """Record how long the governor held a request back."""
        self.wait.labels(normalise_endpoint(endpoint)).observe(max(0.0, seconds))

    # ----------------------------------------------------------------- alerts
    def notify(self, key: str, text: str) -> bool:
        """Queue ``text`` for Slack unless ``key`` alerted within the cooldown; never blocks.
        Returns True when queued; without a webhook URL the alert is only logged."""
        now = self._clock()
        with self._dedup_lock:
            last = self._last_alert.get(key)
            if last is not None and now - last < self.cooldown_s:
                self.alerts_suppressed.inc()
                return False
            self._last_alert[key] = now
        log.warning("rate-limit alert: %s", text)
        if self._webhook_url is None or self._closed:
            return False
        self._ensure_worker()
        try:
            with self._worker_lock:
                self._queue.put_nowait({"text": f"[{self._source}] {text}"})
                self._pending += 1
                self._idle.clear()
        except queue.Full:
            self.alert_failures.labels("queue_full").inc()
            log.warning("rate-limit alert dropped: delivery queue full")
            return False
        return True

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._deliver_loop, name="bybit-slack-alerts", daemon=True
                )
                self._worker.start()

    def _deliver_loop(self) -> None:
        try:
            with httpx.Client(timeout=self.timeout_s, transport=self._transport) as client:
                while True:
                    payload = self._queue.get()
                    if payload is _STOP:
                        return
                    try:
                        self._deliver(client, payload)
                    finally:
                        with self._worker_lock:
                            self._pending -= 1
                            if self._pending == 0:
                                self._idle.set()
        finally:
            self._remove_redactor()  # only once nothing can log the URL any more

    def _remove_redactor(self) -> None:
        if self._redactor is not None:
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).removeFilter(self._redactor)

    def _deliver(self, client: httpx.Client, payload: object) -> None:
        assert self._webhook_url is not None
        try:
            response = client.post(self._webhook_url, json=payload)
        except httpx.TimeoutException:
            reason = "timeout"
        except httpx.TransportError:
            reason = "connect"
        except Exception:
            reason = "error"
        else:
            if response.is_success:
                self.alerts_sent.inc()
                return
            reason = f"http_{response.status_code // 100}xx"
        log.warning("Slack alert delivery failed (%s)", reason)
        self.alert_failures.labels(reason).inc()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert was delivered or failed (for tests and shutdown)."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the delivery thread after the queued alerts, waiting at most ``timeout_s``."""
        self._closed = True
        worker = self._worker
        if worker is None or not worker.is_alive():
            self._remove_redactor()
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        worker.join(timeout_s)
