"""Bybit V5 WebSocket streams for the paper/live runner: closed klines from the public stream and
executions and order updates from the private one, through ccxt.pro.

`StreamFeed` owns the two sockets for one symbol and keeps them alive:

- heartbeat: ccxt.pro sends Bybit's text ping every `ping_interval_s`; a watchdog closes a socket
  that has received no frame at all (data, ack or pong) for `dead_after_s` — a half-open TCP
  connection is therefore noticed within `dead_after_s` plus one watchdog period (~36 s by default);
- reconnect with exponential backoff and jitter, re-authenticate and resubscribe;
- after every (re)subscription of the private stream, a REST reconciliation: open orders,
  executions since the last check (paged) and positions. Executions are de-duplicated by
  execution id across both sources, so each one is delivered exactly once; the public stream
  fills missed closed bars from the REST klines.

Everything is delivered in order as events: on an asyncio.Queue (`feed.events`, the default), to
an async `callback` (awaited one event at a time), or to a synchronous `on_event` handler called
inline — from ccxt.pro's receive callback for stream events, the lowest latency; it must not block.
The feed never places orders: those stay on the REST adapter.
"""

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import ccxt.pro as ccxt_pro
from ccxt.base.errors import NetworkError, RequestTimeout

from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, point_at
from methtrader.model import Bar, Side

ZERO = Decimal(0)
WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True)
class StreamSettings:
    """Timing of the streams. Defaults suit Bybit (ping every ~20 s, idle sockets drop after 10 min);
    tests shrink them."""

    ping_interval_s: float = 15.0
    dead_after_s: float = 35.0  # no frame for this long: the socket is dead
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.5  # each delay is drawn from [d * (1 - jitter), d]
    connect_timeout_s: float = 10.0
    reconcile_interval_s: float = 60.0  # the slow periodic REST safety check
    reconcile_timeout_s: float = 60.0  # the runner's final check waits this long at most
    exec_margin_ms: int = 5_000  # executions re-read before the watermark (then de-duplicated)
    clock_margin_ms: int = 60_000  # tolerated skew between our clock and Bybit's
    seen_capacity: int = 200_000  # execution ids remembered for de-duplication


class StreamState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


# ----------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class Execution:
    """One Bybit execution (a fill), from the stream or the REST list."""

    exec_id: str
    order_id: str
    order_link_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    is_maker: bool
    ts: int
    exec_type: str = "Trade"
    seq: int = 0


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order_id: str
    order_link_id: str
    symbol: str
    status: str  # Bybit's orderStatus: New, PartiallyFilled, Filled, Cancelled, Rejected, ...
    qty: Decimal
    cum_exec_qty: Decimal
    ts: int
    reject_reason: str = ""


@dataclass(frozen=True, slots=True)
class KlineEvent:
    bar: Bar  # a closed bar (confirm=true), each timestamp once and in order
    received_ns: int  # perf_counter_ns when the frame was handled (0 for REST catch-up)
    source: str = "ws"


@dataclass(frozen=True, slots=True)
class ExecutionsEvent:
    executions: tuple[Execution, ...]  # never seen before, whatever the source
    source: str = "ws"


@dataclass(frozen=True, slots=True)
class OrdersEvent:
    orders: tuple[OrderUpdate, ...]
    source: str = "ws"


@dataclass(frozen=True, slots=True)
class ReconciledEvent:
    """A REST check finished. Every execution it found was delivered before this event. An order
    missing from `open_orders` that was acknowledged before `started` (time.monotonic) is done on
    the exchange, with all its executions delivered. `positions` (signed) agree with the
    executions delivered so far when `consistent`."""

    reason: str
    started: float
    open_orders: tuple[OrderUpdate, ...]
    positions: dict[str, Decimal]
    found: int
    consistent: bool


@dataclass(frozen=True, slots=True)
class StateEvent:
    stream: str  # "public" or "private"
    state: StreamState
    reconnects: int
    error: str = ""


FeedEvent = KlineEvent | ExecutionsEvent | OrdersEvent | ReconciledEvent | StateEvent


# ----------------------------------------------------------------------------- parsing
def _decimal(value: object) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def parse_execution(row: dict[str, Any]) -> Execution | None:
    """A raw V5 execution row (stream or `/v5/execution/list`); None for non-fills (funding)."""
    exec_type = str(row.get("execType") or "Trade")
    if exec_type == "Funding":
        return None
    qty = _decimal(row.get("execQty"))
    if qty <= 0:
        return None
    maker = row.get("isMaker")
    return Execution(
        exec_id=str(row["execId"]),
        order_id=str(row.get("orderId") or ""),
        order_link_id=str(row.get("orderLinkId") or ""),
        symbol=str(row.get("symbol") or ""),
        side=Side.BUY if row.get("side") == "Buy" else Side.SELL,
        qty=qty,
        price=_decimal(row.get("execPrice")),
        fee=_decimal(row.get("execFee")),
        is_maker=maker is True or str(maker).lower() == "true",
        ts=int(row.get("execTime") or 0),
        exec_type=exec_type,
        seq=int(row.get("seq") or 0),
    )


def parse_order(row: dict[str, Any]) -> OrderUpdate:
    return OrderUpdate(
        order_id=str(row.get("orderId") or ""),
        order_link_id=str(row.get("orderLinkId") or ""),
        symbol=str(row.get("symbol") or ""),
        status=str(row.get("orderStatus") or ""),
        qty=_decimal(row.get("qty")),
        cum_exec_qty=_decimal(row.get("cumExecQty")),
        ts=int(row.get("updatedTime") or 0),
        reject_reason=str(row.get("rejectReason") or ""),
    )


def signed_positions(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Raw V5 `/v5/position/list` rows as a signed quantity per symbol (Sell is short)."""
    positions: dict[str, Decimal] = {}
    for row in rows:
        size = _decimal(row.get("size"))
        signed = -size if row.get("side") == "Sell" else size
        positions[str(row.get("symbol"))] = positions.get(str(row.get("symbol")), ZERO) + signed
    return positions


def backoff_delay(attempt: int, settings: StreamSettings, rng: random.Random) -> float:
    """Exponential backoff with jitter: attempt 0, 1, 2 … → ~initial, 2×, 4× … up to the cap."""
    base = min(settings.backoff_max_s, settings.backoff_initial_s * 2 ** min(attempt, 30))
    return base * (1 - settings.backoff_jitter * rng.random())


# ----------------------------------------------------------------------------- ccxt.pro client
class ProBybit(ccxt_pro.bybit):
    """ccxt.pro's Bybit client whose kline, execution, order and subscription-ack messages go
    straight to a StreamFeed (raw payloads, no ccxt parsing on the hot path)."""

    mt_feed: "StreamFeed | None" = None

    def handle_ohlcv(self, client, message):  # type: ignore[no-untyped-def]
        if self.mt_feed is None:
            return super().handle_ohlcv(client, message)
        self.mt_feed._on_kline_message(message)

    def handle_my_trades(self, client, message):  # type: ignore[no-untyped-def]
        if self.mt_feed is None:
            return super().handle_my_trades(client, message)
        self.mt_feed._on_execution_message(message)

    def handle_order(self, client, message):  # type: ignore[no-untyped-def]
        if self.mt_feed is None:
            return super().handle_order(client, message)
        self.mt_feed._on_order_message(message)

    def handle_subscription_status(self, client, message):  # type: ignore[no-untyped-def]
        result = super().handle_subscription_status(client, message)
        if self.mt_feed is not None:
            self.mt_feed._on_subscribed(client, message)
        return result


def make_pro_client(
    settings: VenueSettings,
    api_key: str = "",
    api_secret: str = "",
    streams: StreamSettings | None = None,
) -> ProBybit:
    """A ccxt.pro Bybit client configured like `make_client`: linear, unified account, the
    network's WebSocket URLs (the simulator's for network="sim")."""
    streams = streams or StreamSettings()
    # ccxt's own pong check stays a backstop, one ping period or more behind our watchdog
    misses = max(2.0, streams.dead_after_s / streams.ping_interval_s + 2)
    client = ProBybit(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": False,
            "timeout": settings.timeout_ms,
            "streaming": {"keepAlive": int(streams.ping_interval_s * 1000), "maxPingPongMisses": misses},
            "options": {
                "defaultType": "swap",
                "fetchMarkets": {"types": ["linear"]},
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                "recvWindow": settings.recv_window_ms,
                "ws": {"connectionTimeout": int(streams.connect_timeout_s * 1000)},
            },
        }
    )
    return point_at(client, settings)


# ----------------------------------------------------------------------------- the feed
@dataclass
class _Stream:
    name: str
    url: str = ""
    state: StreamState = StreamState.IDLE
    client: Any = None  # the ccxt ws Client whose subscription was acknowledged
    connects: int = 0
    reconnects: int = 0
    attempt: int = 0
    last_error: str = ""


@dataclass
class _Check:
    """When the last check started (Bybit's clock when known, else ours with a skew margin) and
    the newest execution seen then: the next scan starts a few seconds before the later of them."""

    exec_ts: int | None = None
    local_ms: int = 0
    server_ms: int | None = None


Callback = Callable[[FeedEvent], Awaitable[None]]
Handler = Callable[[FeedEvent], None]


@dataclass
class _Counters:
    ws_executions: int = 0
    rest_executions: int = 0
    duplicates: int = 0
    reconciliations: int = 0
    rest_bars: int = 0
    ws_bars: int = 0
    dead_sockets: int = 0


class StreamFeed:
    """Closed klines and private executions/orders of one symbol as an ordered event stream.

    Lifecycle: `await feed.start()`, optionally `await feed.history(n)` (warm-up bars; sets the
    baseline from which every later closed bar is delivered exactly once), consume `feed.events`
    (or pass `callback=` or `on_event=`), `await feed.close()`.
    """

    def __init__(
        self,
        adapter: BybitAdapter,
        symbol: str,
        interval: str = "1h",
        settings: StreamSettings | None = None,
        *,
        private: bool = True,
        queue: "asyncio.Queue[Any] | None" = None,
        callback: Callback | None = None,
        on_event: Handler | None = None,
        client: ProBybit | None = None,
        seed: int | None = None,
    ) -> None:
        self.adapter = adapter
        self.symbol = symbol
        self.interval = interval
        self.settings = settings or StreamSettings()
        self.events: asyncio.Queue[Any] = queue if queue is not None else asyncio.Queue()
        if callback is not None and on_event is not None:
            raise ValueError("give a callback or an on_event handler, not both")
        self.callback = callback
        self.on_event = on_event
        # (stream, exchange timestamp in ms) of every data message, after it was handled: metrics
        self.on_message: Callable[[str, int | None], None] | None = None
        self.want_private = private
        rest = adapter.client
        self.client = client or make_pro_client(
            adapter.settings, rest.apiKey or "", rest.secret or "", self.settings
        )
        self.client.mt_feed = self
        self.public = _Stream("public")
        self.private = _Stream("private")
        self.counters = _Counters()
        self.errors: list[str] = []  # the last 20
        self.error_count = 0
        self._rng = random.Random(seed)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_exec_ts: int | None = None
        self._delivered = 0  # executions delivered, both sources
        self._check = _Check()
        self._interval_ms = int(self.client.parse_timeframe(interval) * 1000)
        self._topic = f"kline.{self.client.timeframes.get(interval, interval)}.{symbol}"
        self._last_bar_ts: int | None = None
        self._early: list[tuple[Bar, int]] | None = None  # stream bars held while history() runs
        self._backlog: list[tuple[Bar, int]] | None = None  # stream bars held while a gap is filled
        self._tasks: list[asyncio.Task[Any]] = []
        self._helpers: set[asyncio.Task[Any]] = set()
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_pending: str | None = None
        self._reconcile_task: asyncio.Task[Any] | None = None
        self._connected = asyncio.Event()
        self._closing = False

    # ------------------------------------------------------------------ state
    @property
    def streams(self) -> list[_Stream]:
        return [self.public, self.private] if self.want_private else [self.public]

    @property
    def connected(self) -> bool:
        return all(s.state is StreamState.CONNECTED for s in self.streams)

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.streams)

    @property
    def states(self) -> dict[str, str]:
        return {s.name: str(s.state) for s in self.streams}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open the sockets (returns at once; `wait_connected` waits for the subscriptions)."""
        if self._tasks:
            return
        rest = self.adapter.client
        if not rest.markets:
            await self.adapter.load_markets()
        self.client.set_markets(rest.markets, rest.currencies)
        market = self.adapter.market_symbol(self.symbol)
        self.public.url = await self.client.get_url_by_market_type(market, False, "watchOHLCV", {})
        if self.want_private:
            self.private.url = await self.client.get_url_by_market_type(None, True, "watchMyTrades", {})
        self._check = _Check(None, _now_ms())
        loops = [self._stream_loop(self.public, self._watch_public), self._watchdog()]
        if self.want_private:
            loops += [self._stream_loop(self.private, self._watch_private), self._periodic()]
        if self.callback is not None:
            loops.append(self._dispatch())
        self._tasks = [asyncio.create_task(c, name=f"stream-feed-{i}") for i, c in enumerate(loops)]

    async def wait_connected(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._tasks, *self._helpers]
        if self._reconcile_task is not None:
            tasks.append(self._reconcile_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.client.close()
        for stream in self.streams:
            stream.state = StreamState.CLOSED

    # ------------------------------------------------------------------ history
    async def history(self, limit: int) -> list[Bar]:
        """The last `limit` closed bars from REST (oldest first). The newest kline may still be
        forming and is left out; stream bars after the returned ones follow as events."""
        self._early = []
        try:
            bars = await self._rest_bars(None, None, limit + 1)
            closed = bars[:-1]
            if closed:
                self._last_bar_ts = closed[-1].ts
            elif bars:
                self._last_bar_ts = bars[-1].ts - self._interval_ms
        finally:
            early, self._early = self._early, None
            for bar, received in early:
                self._accept_bar(bar, received)
        return closed

    # ------------------------------------------------------------------ stream loops
    async def _watch_public(self) -> None:
        await self.client.watch_topics(self.public.url, ["mt::kline"], [self._topic], {})

    async def _watch_private(self) -> None:
        url = self.private.url
        await self.client.authenticate(url)
        await self.client.watch_topics(url, ["mt::execution", "mt::order"], ["execution", "order"], {})

    async def _stream_loop(self, stream: _Stream, watch: Callable[[], Awaitable[None]]) -> None:
        """Subscribe, wait until the connection fails, back off, repeat. Our handlers never resolve
        the watch futures, so `watch()` returns only by raising when the socket goes."""
        while not self._closing:
            stream.state = StreamState.CONNECTING
            try:
                await watch()
                error = "stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            if self._closing:
                return
            self._teardown(stream, error)
            delay = backoff_delay(stream.attempt, self.settings, self._rng)
            stream.attempt += 1
            await asyncio.sleep(delay)

    def _teardown(self, stream: _Stream, error: str) -> None:
        was_up = stream.state is StreamState.CONNECTED
        stream.state = StreamState.BACKOFF
        stream.client = None
        stream.last_error = error
        self._connected.clear()
        client = self.client.clients.get(stream.url)
        if client is not None and not client.closed():  # an error on a live socket: start afresh
            with contextlib.suppress(Exception):
                client.on_error(NetworkError(f"stream {stream.name} reset: {error}"))
        if was_up:
            self._note(f"stream {stream.name} down: {error}")
            self._emit(StateEvent(stream.name, stream.state, stream.reconnects, error))

    def _on_subscribed(self, client: Any, message: dict[str, Any]) -> None:
        try:
            if message.get("success") is False:
                return
            for stream in self.streams:
                if client.url != stream.url or stream.client is client:
                    continue
                stream.client = client
                stream.connects += 1
                stream.attempt = 0
                stream.state = StreamState.CONNECTED
                again = stream.connects > 1
                if again:
                    stream.reconnects += 1
                self._emit(StateEvent(stream.name, stream.state, stream.reconnects))
                if stream is self.private:
                    self.request_reconcile("reconnect" if again else "start")
                elif again:
                    self._spawn(self._bar_worker(catch_up=True))
                if self.connected:
                    self._connected.set()
        except Exception as exc:  # never break ccxt's receive loop
            self._note(f"subscription ack: {type(exc).__name__}: {exc}")

    async def _watchdog(self) -> None:
        dead_ms = self.settings.dead_after_s * 1000
        period = min(1.0, self.settings.dead_after_s / 4)
        while True:
            await asyncio.sleep(period)
            now = _now_ms()
            for stream in self.streams:
                client = self._open_client(stream)
                if client is None:
                    continue
                established = client.connectionEstablished or now
                last = self._last_frame_ms(client, now)
                if now - last > dead_ms:
                    reason = f"no frame for {(now - last) / 1000:.1f} s"
                elif stream.client is not client and now - established > dead_ms:
                    reason = "no subscription ack"
                else:
                    continue
                self.counters.dead_sockets += 1
                client.on_error(RequestTimeout(f"stream {stream.name}: {reason}"))

    def frame_age_s(self, name: str) -> float | None:
        """Seconds since the named stream's socket last received any frame (data, ack or pong);
        None while it is not connected."""
        stream = next((s for s in self.streams if s.name == name), None)
        client = self._open_client(stream) if stream is not None else None
        if client is None:
            return None
        now = _now_ms()
        return (now - self._last_frame_ms(client, now)) / 1000

    def _open_client(self, stream: _Stream) -> Any:
        client = self.client.clients.get(stream.url) if stream.url else None
        if client is None or client.closed() or not client.isConnected:
            return None
        return client

    @staticmethod
    def _last_frame_ms(client: Any, now: int) -> int:
        established = client.connectionEstablished or now
        return max(client.lastPong or 0, getattr(client, "last_message_at", None) or 0, established)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            if self.private.state is StreamState.CONNECTED:
                self.request_reconcile("periodic")

    async def _dispatch(self) -> None:
        assert self.callback is not None
        while True:
            event = await self.events.get()
            try:
                await self.callback(event)
            except Exception as exc:
                self._note(f"callback: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ handlers (ccxt's loop)
    def _on_kline_message(self, message: dict[str, Any]) -> None:
        received = time.perf_counter_ns()
        try:
            if message.get("topic") != self._topic:
                return
            for row in message.get("data") or ():
                if row.get("confirm") is not True:
                    continue
                bar = Bar(
                    self.symbol,
                    int(row["start"]),
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                    float(row["volume"]),
                )
                self._accept_bar(bar, received)
        except Exception as exc:
            self._note(f"kline message: {type(exc).__name__}: {exc}")
        self._observed("public", message)

    def _accept_bar(self, bar: Bar, received: int) -> None:
        if self._early is not None:
            self._early.append((bar, received))
            return
        if self._backlog is not None:
            self._backlog.append((bar, received))
            return
        last = self._last_bar_ts
        if last is not None and bar.ts <= last:
            return
        if last is not None and bar.ts > last + self._interval_ms:
            self._backlog = [(bar, received)]  # bars were missed: fetch them first
            self._spawn(self._bar_worker(catch_up=False))
            return
        self._last_bar_ts = bar.ts
        self.counters.ws_bars += 1
        self._emit(KlineEvent(bar, received, "ws"))

    async def _bar_worker(self, catch_up: bool) -> None:
        """Deliver held stream bars in order, fetching any missed closed bars from REST first.
        `catch_up` (after a public reconnect): also deliver closed bars missed while down."""
        if catch_up:
            if self._backlog is not None or self._early is not None or self._last_bar_ts is None:
                return  # a worker is already on it, or there is no baseline yet
            self._backlog = []
        backlog = self._backlog
        assert backlog is not None
        try:
            if catch_up:
                missed = await self._rest_bars(self._last_bar_ts + 1, None, 1000)  # type: ignore[operator]
                self._deliver_rest(missed[:-1], backlog[0][0].ts if backlog else None)
            while backlog:
                bar, received = backlog[0]
                last = self._last_bar_ts
                if last is not None and bar.ts > last + self._interval_ms:
                    missed = await self._rest_bars(last + 1, bar.ts - 1, 1000)
                    self._deliver_rest(missed, bar.ts)
                backlog.pop(0)
                if self._last_bar_ts is None or bar.ts > self._last_bar_ts:
                    self._last_bar_ts = bar.ts
                    self.counters.ws_bars += 1
                    self._emit(KlineEvent(bar, received, "ws"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._note(f"kline catch-up: {type(exc).__name__}: {exc}")
            for bar, received in backlog:  # deliver what we have rather than stall
                if self._last_bar_ts is None or bar.ts > self._last_bar_ts:
                    self._last_bar_ts = bar.ts
                    self._emit(KlineEvent(bar, received, "ws"))
        finally:
            self._backlog = None

    def _deliver_rest(self, bars: list[Bar], before: int | None) -> None:
        for bar in bars:
            last = self._last_bar_ts
            if (last is None or bar.ts > last) and (before is None or bar.ts < before):
                self._last_bar_ts = bar.ts
                self.counters.rest_bars += 1
                self._emit(KlineEvent(bar, 0, "rest"))

    def _on_execution_message(self, message: dict[str, Any]) -> None:
        try:
            fresh = self._fresh(message.get("data") or ())
            if fresh:
                self.counters.ws_executions += len(fresh)
                self._emit(ExecutionsEvent(tuple(fresh), "ws"))
        except Exception as exc:
            self._note(f"execution message: {type(exc).__name__}: {exc}")
        self._observed("private", message)

    def _on_order_message(self, message: dict[str, Any]) -> None:
        try:
            updates = tuple(
                parse_order(row)
                for row in message.get("data") or ()
                if row.get("symbol") == self.symbol and row.get("category", "linear") == "linear"
            )
            if updates:
                self._emit(OrdersEvent(updates, "ws"))
        except Exception as exc:
            self._note(f"order message: {type(exc).__name__}: {exc}")
        self._observed("private", message)

    def _observed(self, stream: str, message: Any) -> None:
        if self.on_message is None:
            return
        ts = (message.get("ts") or message.get("creationTime")) if isinstance(message, dict) else None
        try:
            self.on_message(stream, ts if isinstance(ts, int) else None)
        except Exception as exc:  # metrics must never break the feed
            self._note(f"on_message: {type(exc).__name__}: {exc}")

    def _fresh(self, rows: Any) -> list[Execution]:
        """Executions of our symbol never delivered before, marked as delivered."""
        fresh = []
        seen = self._seen
        for row in rows:
            if row.get("symbol") != self.symbol or row.get("category", "linear") != "linear":
                continue
            if str(row.get("execId")) in seen:
                self.counters.duplicates += 1
                continue
            execution = parse_execution(row)
            if execution is None:
                continue
            self._seen[execution.exec_id] = None
            if len(self._seen) > self.settings.seen_capacity:
                self._seen.popitem(last=False)
            if self._last_exec_ts is None or execution.ts > self._last_exec_ts:
                self._last_exec_ts = execution.ts
            fresh.append(execution)
        self._delivered += len(fresh)
        return fresh

    # ------------------------------------------------------------------ REST reconciliation
    def request_reconcile(self, reason: str) -> None:
        """Run a reconciliation soon (coalesced with one already waiting)."""
        self._reconcile_pending = self._reconcile_pending or reason
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.create_task(self._reconcile_worker())

    async def _reconcile_worker(self) -> None:
        while self._reconcile_pending is not None and not self._closing:
            reason, self._reconcile_pending = self._reconcile_pending, None
            try:
                await self.reconcile(reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._note(f"reconciliation ({reason}): {type(exc).__name__}: {exc}")
                if self.private.state is StreamState.CONNECTED and not self._closing:
                    await asyncio.sleep(backoff_delay(1, self.settings, self._rng))
                    self._reconcile_pending = self._reconcile_pending or reason

    async def reconcile(self, reason: str = "manual", attempts: int = 3) -> ReconciledEvent:
        """Open orders, then executions since the last check, then positions, then the executions
        of the last seconds again; repeated (up to `attempts`, over the last seconds only) until no
        execution turned up around the positions read."""
        async with self._reconcile_lock:
            check = _Check(self._last_exec_ts, _now_ms())
            since = self._since()
            found = 0
            for _ in range(attempts):
                started = time.monotonic()
                open_orders, listed_ms = await self._rest_open_orders()
                check.server_ms = check.server_ms or listed_ms or None
                found += await self._rest_executions(since)
                before = self._delivered
                positions, server_ms = await self._rest_positions()
                since = server_ms - self.settings.exec_margin_ms
                found += await self._rest_executions(since)
                consistent = self._delivered == before
                if consistent:
                    break
            self._check = check
            self.counters.reconciliations += 1
            event = ReconciledEvent(reason, started, tuple(open_orders), positions, found, consistent)
            self._emit(event)
            return event

    def _since(self) -> int:
        s = self.settings
        if self._check.server_ms:
            since = self._check.server_ms - s.exec_margin_ms
        else:
            since = self._check.local_ms - s.clock_margin_ms
        if self._check.exec_ts is not None:
            since = max(since, self._check.exec_ts - s.exec_margin_ms)
        return max(since, _now_ms() - WEEK_MS + s.clock_margin_ms)  # Bybit's 7-day window

    async def _rest_executions(self, since: int) -> int:
        rows, _ = await self.adapter.fetch_pages(
            "privateGetV5ExecutionList",
            {"category": "linear", "symbol": self.symbol, "startTime": since, "limit": 100},
        )
        rows.sort(key=lambda r: (int(r.get("execTime") or 0), int(r.get("seq") or 0)))
        fresh = self._fresh(rows)
        if fresh:
            self.counters.rest_executions += len(fresh)
            self._emit(ExecutionsEvent(tuple(fresh), "rest"))
        return len(fresh)

    async def _rest_open_orders(self) -> tuple[list[OrderUpdate], int]:
        rows, server_ms = await self.adapter.fetch_pages(
            "privateGetV5OrderRealtime", {"category": "linear", "symbol": self.symbol, "limit": 50}
        )
        return [parse_order(r) for r in rows], server_ms

    async def _rest_positions(self) -> tuple[dict[str, Decimal], int]:
        rows, server_ms = await self.adapter.fetch_pages(
            "privateGetV5PositionList", {"category": "linear", "symbol": self.symbol}
        )
        return signed_positions(rows), server_ms or _now_ms()

    async def _rest_bars(self, start: int | None, end: int | None, limit: int) -> list[Bar]:
        """Klines from REST, oldest first."""
        return await self.adapter.fetch_klines(self.symbol, self.interval, start, end, limit)

    # ------------------------------------------------------------------ plumbing
    def _emit(self, event: FeedEvent) -> None:
        handler = self.on_event
        if handler is None:
            self.events.put_nowait(event)
            return
        try:
            handler(event)
        except Exception as exc:  # never into ccxt's receive loop
            self._note(f"on_event: {type(exc).__name__}: {exc}")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _note(self, message: str) -> None:
        self.errors = [*self.errors[-19:], message]
        self.error_count += 1


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
