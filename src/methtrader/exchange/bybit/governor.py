"""Paces Bybit requests per endpoint from the live rate-limit headers so the exchange never answers 10006.
Waits until the shared budget has room, obeys 10006/remaining=0 resets, and stops new orders on an IP ban."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from methtrader.exchange.bybit.budget import RETENTION_WINDOWS, Budget, Decision, InMemoryBudget, Window
from methtrader.exchange.bybit.limits import (
    HTTP_IP_BANNED,
    HTTP_THROTTLED,
    IP_LIMIT,
    IP_WINDOW_MS,
    RETCODE_RATE_LIMITED,
    WINDOW_MS,
    LimitStatus,
    budget_key,
    is_order_endpoint,
    normalise_endpoint,
    parse_limit_headers,
    static_limit,
)

if TYPE_CHECKING:
    from methtrader.exchange.bybit.monitor import RateLimitMonitor

log = logging.getLogger(__name__)

IP_KEY = "ip"
"""Budget key of the per-IP window (all endpoints together)."""

AlertCallback = Callable[[str, str], object]
"""``on_alert(dedup_key, message)``: must return quickly (RateLimitMonitor.notify only enqueues)."""


def wall_clock_ms() -> float:
    """Epoch milliseconds: the clock Bybit's reset timestamps are expressed in."""
    return time.time() * 1000.0


class TradingBlocked(RuntimeError):
    """Raised instead of sending a new order while Bybit bans this IP (HTTP 403).
    Cancels and queries still go through, paced; the ban ends at ``until_ms`` or on lift_ip_ban()."""

    def __init__(self, until_ms: float, endpoint: str) -> None:
        stamp = datetime.fromtimestamp(until_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        super().__init__(
            f"new orders refused ({endpoint}): Bybit banned this IP with HTTP 403; "
            f"blocked until {stamp} unless lifted earlier; cancels still allowed"
        )
        self.until_ms = until_ms
        self.endpoint = endpoint


@dataclass(slots=True, eq=False)
class Ticket:
    """One granted request; report its response with observe() and give it back with release().
    ``slot()`` releases automatically; ``sent_ms`` is the grant time, ``waited_ms`` the pacing delay."""

    governor: RateGovernor
    endpoint: str
    key: str
    token: str
    windows: tuple[Window, ...]
    is_order: bool
    sent_ms: float
    waited_ms: float
    done_ms: float | None = None
    released: bool = False

    def observe(
        self,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        ret_code: int | None = 0,
        http_status: int = 200,
    ) -> LimitStatus | None:
        """Feed this request's response (headers, retCode, HTTP status) back to the governor."""
        status = parse_limit_headers(headers)
        self.governor.observe(self.endpoint, status, ret_code, http_status, ticket=self)
        return status


class RateGovernor:
    """Per-endpoint pacing of one Bybit UID's REST requests over a rolling-window budget.
    The static table applies until a response reports the live limit; the clock and sleep are injectable."""

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        clock: Callable[[], float] = wall_clock_ms,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        guard_ms: float = 10.0,
        in_flight_timeout_ms: float = 10_000.0,
        shared_retry_ms: float = 5_000.0,
        fallback_block_ms: float = 1_500.0,
        max_block_ms: float = 10_000.0,
        ip_limit: int | None = int(IP_LIMIT * 0.9),
        ip_window_ms: float = IP_WINDOW_MS,
        ip_ban_ms: float = 600_000.0,
        static_limits: Mapping[str, int] | None = None,
        on_alert: AlertCallback | None = None,
        monitor: RateLimitMonitor | None = None,
    ) -> None:
        self._fallback = InMemoryBudget()
        self._budget: Budget = budget if budget is not None else self._fallback
        self._clock = clock
        self._sleep = sleep
        self.guard_ms = guard_ms
        self.in_flight_timeout_ms = in_flight_timeout_ms
        self.shared_retry_ms = shared_retry_ms
        self._shared_down_until = 0.0
        self.fallback_block_ms = fallback_block_ms
        self.max_block_ms = max_block_ms
        self.ip_limit = ip_limit
        self.ip_window_ms = ip_window_ms
        self.ip_ban_ms = ip_ban_ms
        self._static = {_static_key(k): v for k, v in (static_limits or {}).items()}
        self._on_alert = on_alert
        self._monitor = monitor
        self._live: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._pending_blocks: list[tuple[str, float, float]] = []
        self._pending_reconcile: list[tuple[Window, int, float, float]] = []
        self._ban_until = 0.0
        self.shared_failures = 0
        self.phantoms_added = 0

    # ----------------------------------------------------------------- limits and state
    def limit_for(self, endpoint: str, category: str | None = None) -> int | None:
        """Current per-UID limit: the last header's X-Bapi-Limit, else the static table (None = IP only)."""
        path = normalise_endpoint(endpoint)
        return self._limit(budget_key(path, category), path, category)

    def _limit(self, key: str, path: str, category: str | None) -> int | None:
        if key in self._live:
            return self._live[key]
        if key in self._static:
            return self._static[key]
        if path in self._static:
            return self._static[path]
        return static_limit(path, category)

    def ip_banned(self, now_ms: float | None = None) -> bool:
        """True while new orders are refused after an HTTP 403 (IP ban)."""
        now = self._clock() if now_ms is None else now_ms
        return now < self._ban_until

    @property
    def ip_ban_until_ms(self) -> float | None:
        """End of the current IP ban (epoch ms), or None when not banned."""
        return self._ban_until if self.ip_banned() else None

    def lift_ip_ban(self) -> None:
        """End the IP-ban state early (an operator checked that the ban is over)."""
        self._ban_until = 0.0

    # ----------------------------------------------------------------- acquiring
    async def acquire(
        self, endpoint: str, is_order: bool | None = None, *, category: str | None = None, cost: int = 1
    ) -> Ticket:
        """Wait until ``endpoint`` has budget for ``cost`` requests, reserve it and return the ticket.
        Raises TradingBlocked for orders (``is_order``, default: create/amend endpoints) during an IP ban."""
        path = normalise_endpoint(endpoint)
        key = budget_key(path, category)
        order = is_order_endpoint(path) if is_order is None else is_order
        start = self._clock()
        self._refuse_if_banned(order, start, path)
        token = uuid.uuid4().hex
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            while True:
                await self._flush()
                now = self._clock()
                self._refuse_if_banned(order, now, path)
                windows = self._windows(key, path, category, cost)
                changed = self._changed.setdefault(key, asyncio.Event())
                changed.clear()
                decision = await self._reserve(windows, token, now)
                if decision.granted:
                    break
                await self._pause(decision.wait_ms, changed)
        waited = now - start
        if self._monitor is not None:
            self._monitor.observe_wait(path, waited / 1000.0)
        return Ticket(self, path, key, token, windows, order, now, waited)

    @contextlib.asynccontextmanager
    async def slot(
        self, endpoint: str, is_order: bool | None = None, *, category: str | None = None, cost: int = 1
    ) -> AsyncIterator[Ticket]:
        """``async with governor.slot(path, is_order) as ticket:`` send, then ``ticket.observe(...)``.
        The reservation is released (its response time recorded) when the block exits, even on error."""
        ticket = await self.acquire(endpoint, is_order, category=category, cost=cost)
        try:
            yield ticket
        finally:
            await self.release(ticket)

    async def release(self, ticket: Ticket, now_ms: float | None = None) -> None:
        """Record that ``ticket``'s request is over: its response time replaces the in-flight placeholder."""
        if ticket.released:
            return
        ticket.released = True
        done = ticket.done_ms if ticket.done_ms is not None else (self._clock() if now_ms is None else now_ms)
        ticket.done_ms = done
        await self._shared("complete", ticket.windows, ticket.token, done)
        self._wake(ticket.key)
        await self._flush()

    def _refuse_if_banned(self, is_order: bool, now: float, path: str) -> None:
        if is_order and now < self._ban_until:
            raise TradingBlocked(self._ban_until, path)

    def _windows(self, key: str, path: str, category: str | None, cost: int) -> tuple[Window, ...]:
        windows: list[Window] = []
        limit = self._limit(key, path, category)
        if limit is not None:
            if cost > limit:
                log.warning("cost %d exceeds the %d/s limit of %s; counted as %d", cost, limit, key, limit)
            windows.append(Window(key, limit, WINDOW_MS + self.guard_ms, max(1, min(cost, limit))))
        if self.ip_limit:
            windows.append(Window(IP_KEY, self.ip_limit, self.ip_window_ms + self.guard_ms, 1))
        return tuple(windows)

    async def _pause(self, wait_ms: float, changed: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self._sleep(max(wait_ms, 0.5) / 1000.0))
        waker = asyncio.ensure_future(changed.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _wake(self, key: str) -> None:
        event = self._changed.get(key)
        if event is not None:
            event.set()

    # ----------------------------------------------------------------- responses
    def observe(
        self,
        endpoint: str,
        status: LimitStatus | None,
        ret_code: int | None = 0,
        http_status: int = 200,
        now_ms: float | None = None,
        *,
        category: str | None = None,
        ticket: Ticket | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Learn from one response: live limit, remaining budget, 10006, HTTP 403/429. Never blocks.
        Shared effects (blocks, reconciliation) are applied to the budget on the next acquire/release."""
        now = self._clock() if now_ms is None else now_ms
        path = normalise_endpoint(endpoint)
        key = ticket.key if ticket is not None else budget_key(path, category)
        if ticket is not None:
            if ticket.done_ms is None:
                ticket.done_ms = now
            if latency_s is None:
                latency_s = max(0.0, (now - ticket.sent_ms) / 1000.0)
        if status is not None and status.limit:
            self._live[key] = status.limit
        if http_status == HTTP_IP_BANNED:
            self._enter_ip_ban(now, path)
        elif http_status == HTTP_THROTTLED:
            self._block(key, now + self.fallback_block_ms, now)
        if ret_code == RETCODE_RATE_LIMITED:
            self._block(key, self._reset_deadline(status, now), now)
        elif status is not None and status.remaining == 0 and status.reset_ms and status.reset_ms > now:
            self._block(key, min(status.reset_ms + self.guard_ms, now + self.max_block_ms), now)
        if (
            status is not None
            and status.limit
            and status.remaining is not None
            and ret_code != RETCODE_RATE_LIMITED
            and http_status < 400
        ):
            window = Window(key, status.limit, WINDOW_MS + self.guard_ms)
            sent = ticket.sent_ms if ticket is not None else now - RETENTION_WINDOWS * WINDOW_MS
            used = status.limit - status.remaining
            self._pending_reconcile.append((window, used, sent - window.window_ms, now))
        if self._monitor is not None:
            self._monitor.observe(path, status, ret_code, http_status, latency_s)
        self._wake(key)

    def _reset_deadline(self, status: LimitStatus | None, now: float) -> float:
        reset = status.reset_ms if status is not None else None
        if reset is None or reset <= now:
            return now + self.fallback_block_ms
        return min(reset + self.guard_ms, now + self.max_block_ms)

    def _block(self, key: str, until: float, now: float) -> None:
        log.info("rate limit: %s blocked for %.0f ms", key, until - now)
        self._pending_blocks.append((key, until, now))

    def _enter_ip_ban(self, now: float, path: str) -> None:
        first = now >= self._ban_until
        self._ban_until = max(self._ban_until, now + self.ip_ban_ms)
        for event in self._changed.values():
            event.set()  # orders already waiting for budget are refused now, not when their turn comes
        if not first:
            return
        stamp = datetime.fromtimestamp(self._ban_until / 1000, tz=UTC).isoformat(timespec="seconds")
        message = (
            f"Bybit answered HTTP 403 on {path}: this IP is banned (600 req/5 s exceeded). "
            f"New orders are refused until {stamp}; cancels continue."
        )
        log.error(message)
        if self._on_alert is not None:
            try:
                self._on_alert("ip-ban", message)
            except Exception:
                log.exception("IP-ban alert callback failed")

    # ----------------------------------------------------------------- budget plumbing
    async def _flush(self) -> None:
        while self._pending_blocks:
            key, until, now = self._pending_blocks.pop(0)
            await self._shared("block", key, until, now)
        while self._pending_reconcile:
            window, used, since, now = self._pending_reconcile.pop(0)
            token = "ext-" + uuid.uuid4().hex
            added = await self._shared("reconcile", window, used, since, now, token)
            if added:
                self.phantoms_added += int(added)
                log.info("rate limit: %s has %d requests this process did not make", window.key, added)

    async def _reserve(self, windows: tuple[Window, ...], token: str, now: float) -> Decision:
        pending = now + self.in_flight_timeout_ms
        if not windows:
            return Decision(True)
        if self._budget is self._fallback or now < self._shared_down_until:
            return await self._fallback.reserve(windows, token, now, pending)
        try:
            return await self._budget.reserve(windows, token, now, pending)
        except Exception as exc:
            self._shared_failed("reserve", exc)
            return await self._fallback.reserve(windows, token, now, pending)

    async def _shared(self, operation: str, *args: object) -> object:
        """Apply one operation to the local fallback budget and to the shared budget (if any)."""
        local = await getattr(self._fallback, operation)(*args)
        if self._budget is self._fallback or self._clock() < self._shared_down_until:
            return local
        try:
            return await getattr(self._budget, operation)(*args)
        except Exception as exc:
            self._shared_failed(operation, exc)
            return local

    def _shared_failed(self, operation: str, exc: Exception) -> None:
        self.shared_failures += 1
        self._shared_down_until = self._clock() + self.shared_retry_ms
        log.warning(
            "shared rate budget unavailable (%s: %s); pacing locally for %.0f ms",
            operation,
            type(exc).__name__,
            self.shared_retry_ms,
        )

    async def close(self) -> None:
        """Close the shared budget's connections."""
        await self._budget.close()


def _static_key(key: str) -> str:
    path, _, category = key.partition("|")
    return budget_key(path, category or None)
