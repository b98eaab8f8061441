"""Slack alerts for incidents, liquidations, the brake and rate-limit warnings, deduplicated per key.
Delivery runs on a bounded queue and a background thread, so a slow, down or failing Slack never
blocks or fails trading; it only shows up in ``methtrader_alert_failures_total``."""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from methtrader.ops.logs import get_logger, register_secret, resolve_env

FAILURE_REASONS = ("queue_full", "timeout", "connect", "http_4xx", "http_5xx", "error")
"""Values of the ``reason`` label of ``methtrader_alert_failures_total``."""
_STOP = object()
_PRUNE_ABOVE = 1024


class AlertKind(StrEnum):
    """What an alert is about; the ``kind`` label of the alert counters and the head of the Slack text."""

    INCIDENT = "incident"
    LIQUIDATION = "liquidation"
    BRAKE = "brake"
    RATE_LIMIT = "rate_limit"


_HEADS = {
    AlertKind.INCIDENT: ":rotating_light: INCIDENT",
    AlertKind.LIQUIDATION: ":boom: LIQUIDATION",
    AlertKind.BRAKE: ":octagonal_sign: BRAKE",
    AlertKind.RATE_LIMIT: ":warning: RATE LIMIT",
}
_LOG_LEVELS = {
    AlertKind.INCIDENT: "error",
    AlertKind.LIQUIDATION: "error",
    AlertKind.BRAKE: "warning",
    AlertKind.RATE_LIMIT: "warning",
}


@functools.cache
def _log() -> Any:
    return get_logger("alerts")


class SlackNotifier:
    """Posts alerts to a Slack incoming webhook without ever blocking the caller.
    One alert per (kind, key) per cooldown; the webhook URL is a registered secret, never logged."""

    def __init__(
        self,
        webhook_url: str | None,
        *,
        registry: CollectorRegistry | None = None,
        cooldown_s: float = 300.0,
        timeout_s: float = 2.0,
        queue_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        source: str = "methtrader",
        env: str | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._webhook_url = (webhook_url or "").strip() or None
        if self._webhook_url is not None:
            register_secret(self._webhook_url)
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._transport = transport
        self._origin = f"{source}/{resolve_env(env)}"
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
        self.sent = Counter("methtrader_alerts_sent", "Alerts delivered to Slack", ["kind"], registry=r)
        self.suppressed = Counter(
            "methtrader_alerts_suppressed", "Alerts dropped by the per-key cooldown", ["kind"], registry=r
        )
        self.failures = Counter(
            "methtrader_alert_failures",
            "Alerts that could not be delivered (queue_full, timeout, connect, http_4xx/5xx, error)",
            ["reason"],
            registry=r,
        )
        for kind in AlertKind:  # every series exists from the start, so rate() and absent() behave
            self.sent.labels(kind.value)
            self.suppressed.labels(kind.value)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        if self._webhook_url is not None:
            self._ensure_worker()

    def __repr__(self) -> str:
        return f"SlackNotifier(webhook={'configured' if self._webhook_url else 'none'})"

    @property
    def configured(self) -> bool:
        """True when alerts go to Slack; without a webhook they are only logged."""
        return self._webhook_url is not None

    # ----------------------------------------------------------------- sending
    def notify(self, key: str, text: str, kind: AlertKind | str = AlertKind.INCIDENT) -> bool:
        """Queue ``text`` unless the same ``kind`` and ``key`` alerted within the cooldown; never blocks.
        Returns True when queued for Slack; every alert that is not suppressed is also logged."""
        kind = AlertKind(kind)
        now = self._clock()
        dedup_key = f"{kind.value}:{key}"
        with self._dedup_lock:
            last = self._last_alert.get(dedup_key)
            if last is not None and now - last < self.cooldown_s:
                self.suppressed.labels(kind.value).inc()
                _log().debug("alert suppressed", kind=kind.value, key=key)
                return False
            self._last_alert[dedup_key] = now
            if len(self._last_alert) > _PRUNE_ABOVE:
                self._prune(now)
        getattr(_log(), _LOG_LEVELS[kind])("alert", kind=kind.value, key=key, text=text)
        if self._webhook_url is None or self._closed:
            return False
        self._ensure_worker()
        try:
            with self._worker_lock:
                self._queue.put_nowait({"text": f"{_HEADS[kind]} [{self._origin}] {text}", "_kind": kind})
                self._pending += 1
                self._idle.clear()
        except queue.Full:
            self.failures.labels("queue_full").inc()
            _log().warning("Slack alert dropped: delivery queue full", kind=kind.value, key=key)
            return False
        return True

    def incident(self, text: str, *, key: str | None = None) -> bool:
        """Something is wrong and a human should look (stream gap, database down, reconciliation diff)."""
        return self.notify(key or text, text, AlertKind.INCIDENT)

    def liquidation(self, text: str, *, key: str | None = None) -> bool:
        """The risk guard liquidated positions."""
        return self.notify(key or text, text, AlertKind.LIQUIDATION)

    def brake(self, text: str, *, key: str | None = None) -> bool:
        """The emergency brake was pulled or released; pass a unique key (the command's seq) so a second
        brake within the cooldown still alerts."""
        return self.notify(key or text, text, AlertKind.BRAKE)

    def rate_limit(self, text: str, *, key: str | None = None) -> bool:
        """An exchange rate-limit budget runs low, or the IP was banned."""
        return self.notify(key or text, text, AlertKind.RATE_LIMIT)

    def _prune(self, now: float) -> None:
        for stale in [k for k, t in self._last_alert.items() if now - t >= self.cooldown_s]:
            del self._last_alert[stale]

    # ----------------------------------------------------------------- delivery
    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._deliver_loop, name="slack-alerts", daemon=True)
                self._worker.start()

    def _deliver_loop(self) -> None:
        with httpx.Client(timeout=self.timeout_s, transport=self._transport) as client:
            while True:
                payload = self._queue.get()
                if payload is _STOP:
                    return
                try:
                    assert isinstance(payload, dict)
                    self._deliver(client, payload)
                finally:
                    with self._worker_lock:
                        self._pending -= 1
                        if self._pending == 0:
                            self._idle.set()

    def _deliver(self, client: httpx.Client, payload: dict[str, Any]) -> None:
        assert self._webhook_url is not None
        kind = payload.pop("_kind")
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
                self.sent.labels(kind.value).inc()
                return
            status = response.status_code
            reason = "http_5xx" if status >= 500 else "http_4xx" if status >= 400 else "error"
        self.failures.labels(reason).inc()
        _log().warning("Slack alert delivery failed", reason=reason, kind=kind.value)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert was delivered or failed (for tests and shutdown)."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the delivery thread after the queued alerts, waiting at most ``timeout_s``."""
        self._closed = True
        worker = self._worker
        if worker is None or not worker.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        worker.join(timeout_s)


_LIQUIDATING = frozenset({"var_liquidation", "drawdown_halt", "daily_loss"})


def guard_event_alert(notifier: SlackNotifier, kind: str, detail: str) -> bool:
    """Slack for what the risk guard did on its own (liquidations, tightening) or was told (brake)."""
    text = f"risk guard {kind}: {detail}"
    if kind in _LIQUIDATING:
        return notifier.liquidation(text, key=f"guard:{kind}")
    if kind == "brake":
        return notifier.brake(text, key="guard:brake")
    return notifier.incident(text, key=f"guard:{kind}")
