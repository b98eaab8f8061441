"""The paper/live runner: the same Engine, a wall clock, and Bybit (or the local simulator) as the
venue. Market data, order requests and fills cross an async edge; the engine itself stays
synchronous and does no I/O.

Stream-driven: closed bars (confirm=true klines) and the account's executions and order updates
arrive over WebSocket through a `StreamFeed`, whose events are handled inline as they are decoded;
order requests queue in `LiveVenue.outbox` and leave through the REST adapter from a sender task,
so a slow request never holds up market data.
Executions are de-duplicated by execution id and become engine fills exactly once. REST is only
read to reconcile: after every reconnect, every `StreamSettings.reconcile_interval_s`, and once at
the end of a run, so the ledger ends equal to the exchange's.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ccxt.base.errors import OrderNotFound

from methtrader.engine.clock import WallClock
from methtrader.engine.engine import Engine
from methtrader.engine.ids import RandomIds
from methtrader.engine.portfolio import Portfolio
from methtrader.engine.reconcile import FINAL_STATUS, LedgerReconciliation, reconcile_ledger
from methtrader.engine.recorder import LedgerRecorder
from methtrader.engine.risk_hook import NoRisk, RiskHook
from methtrader.exchange.bybit.adapter import BybitAdapter, ResponseMeta
from methtrader.exchange.bybit.streams import (
    Execution,
    ExecutionsEvent,
    KlineEvent,
    OrdersEvent,
    OrderUpdate,
    ReconciledEvent,
    StateEvent,
    StreamFeed,
    StreamSettings,
    StreamState,
)
from methtrader.ml.blobs import BlobStore
from methtrader.model import Bar, Fill, Instrument, Liquidity, Order, OrderStatus, OrderType
from methtrader.model.instrument import to_decimal
from methtrader.model.order import IllegalTransition
from methtrader.store.ledger import params_hash
from methtrader.strategies.base import Strategy
from methtrader.strategies.indicators import StreamFrames

ZERO = Decimal(0)
log = logging.getLogger(__name__)  # ids and amounts go in `extra` (the body), never in labels
GUARD_LINEAGE = {"strategy": "risk_guard", "params": {}, "params_hash": params_hash({})}
SENDERS = 4  # requests in flight at once: a slow answer does not hold up the next order
LIST_LAG_S = 1.0  # an order acknowledged this recently may not be in Bybit's open-order list yet


class LiveObserver(Protocol):
    """What a live session reports as it goes (metrics implement it; the engine imports none)."""

    def on_message(self, stream: str, exchange_ts_ms: int | None) -> None: ...

    def on_bar(self, bar: Bar, received_ns: int) -> None: ...

    def on_order(self, order: Order, event: str) -> None: ...

    def on_fills(self, fills: list[Fill]) -> None: ...

    def on_status(self, runner: "LiveRunner") -> None: ...


class LiveVenue:
    """The engine's synchronous view of a remote exchange: orders are accepted into `outbox`
    (status New) and the async side sends them; the exchange's answers update them later."""

    def __init__(self, symbols: list[str], on_order: Callable[[Order, str], None] | None = None) -> None:
        self.open_orders: dict[str, list[Order]] = {s: [] for s in symbols}
        self.orders: dict[str, Order] = {}
        self.outbox: asyncio.Queue[tuple[str, Order]] = asyncio.Queue()
        self.on_order = on_order
        # write-ahead: runs before the order is queued for sending; if it raises, nothing is sent
        self.before_send: Callable[[Order, int], None] | None = None

    def submit(self, order: Order, ts: int) -> Order:
        if order.trade_id in self.orders:
            return self.orders[order.trade_id]
        order.created_ts = order.updated_ts = ts
        if self.before_send is not None:
            self.before_send(order, ts)
        self.orders[order.trade_id] = order
        self.open_orders[order.symbol].append(order)
        self.outbox.put_nowait(("create", order))
        if self.on_order is not None:
            self.on_order(order, "submitted")
        return order

    def cancel(self, trade_id: str, ts: int) -> Order | None:
        order = self.orders.get(trade_id)
        if order is None or not order.status.is_open:
            return None
        self.outbox.put_nowait(("cancel", order))
        return order

    def close(self, order: Order, status: OrderStatus, ts: int, reason: str = "") -> None:
        """The exchange says the order is done (rejected, cancelled or filled)."""
        if order.status.is_open and status is not order.status:
            if status is OrderStatus.REJECTED:
                order.reject(reason, ts)
            else:
                order.transition(status, ts)
        if order in self.open_orders[order.symbol]:
            self.open_orders[order.symbol].remove(order)
            if self.on_order is not None:
                self.on_order(order, order.status.value.lower())


@dataclass
class LiveStatus:
    """What the terminal view and the metrics show."""

    connected: bool = False
    last_price: float = float("nan")
    bar_ts: int = 0
    bars: int = 0
    position: Decimal = Decimal(0)
    equity: float = float("nan")
    peak: float = float("nan")
    fills: int = 0
    errors: list[str] = field(default_factory=list)
    utilisation: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    reconciliations: int = 0
    streams: dict[str, str] = field(default_factory=dict)

    @property
    def drawdown(self) -> float:
        return 1 - self.equity / self.peak if self.peak > 0 else 0.0


class _Tick:
    """Marker event: refresh the status view."""


_TICK = _Tick()


@dataclass
class _Final:
    """The exchange's final word on an order, applied once our fills catch up with it."""

    status: OrderStatus
    cum_qty: Decimal
    reason: str = ""


class LiveRunner:
    """Drive one strategy on one symbol through a BybitAdapter until `max_bars` bars or `stop()`.

    `poll_seconds` is how often the status is refreshed and `on_update` called (market data and
    fills are pushed, not polled). `feed` may be given (not yet started, without a callback or
    handler: the runner becomes its `on_event` handler); by default the runner opens a
    `StreamFeed` with `stream_settings` on the adapter's venue and credentials.
    """

    def __init__(
        self,
        strategy: Strategy,
        adapter: BybitAdapter,
        instrument: Instrument,
        cash: Decimal,
        risk: RiskHook | None = None,
        interval: str = "1h",
        poll_seconds: float = 0.1,
        on_update: Callable[[LiveStatus], None] | None = None,
        *,
        feed: StreamFeed | None = None,
        stream_settings: StreamSettings | None = None,
        settle_seconds: float = 5.0,
        observer: LiveObserver | None = None,
        recorder: LedgerRecorder | None = None,
        lineage: dict[str, Any] | None = None,
        blobs: BlobStore | None = None,
        alert: Callable[[str], object] | None = None,
        snapshot_seconds: float = 60.0,
        adopt_unexplained: bool = False,
    ) -> None:
        if feed is not None and (feed.callback is not None or feed.on_event is not None):
            raise ValueError("the runner handles the feed's events: give it a feed without a handler")
        self.strategy = strategy
        self.adapter = adapter
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.interval = interval
        self.poll_seconds = poll_seconds
        self.on_update = on_update
        self.settle_seconds = settle_seconds
        self.stream_settings = stream_settings or (feed.settings if feed else StreamSettings())
        self.observer = observer
        self.recorder = recorder
        self.lineage = lineage or {}  # fixed lineage fields of the session (code commit...)
        self.blobs = blobs  # where a model decision's features and raw window are kept
        params = {k: str(v) if isinstance(v, Decimal) else v for k, v in strategy.params().items()}
        self._strategy_lineage = {  # fixed for the session: hashed once, not per order
            "strategy": strategy.name or type(strategy).__name__,
            "params": params,
            "params_hash": params_hash(params),
        }
        self.ledger_check: LedgerReconciliation | None = None
        self.snapshot_seconds = snapshot_seconds  # position and equity into the ledger this often
        self.adopt_unexplained = adopt_unexplained  # a position the ledger cannot explain: trade on
        self.alert = alert  # incidents an operator must hear of (Slack), beyond the log
        self._crash_at = os.environ.get("METHTRADER_CRASH_AT", "")
        self.venue = LiveVenue([self.symbol], self._order_changed)
        if recorder is not None:
            self.venue.before_send = self._write_ahead
        self.portfolio = Portfolio(cash)
        self.clock = WallClock()
        self.engine = Engine(
            strategy,
            self.venue,
            {self.symbol: instrument},
            self.clock,
            self.portfolio,
            RandomIds(),
            risk or NoRisk(),
        )
        self.frames = StreamFrames(strategy.indicators(), float(instrument.tick_size))
        self.status = LiveStatus()
        self._own_feed = feed is None
        self.feed = feed or StreamFeed(adapter, self.symbol, interval, self.stream_settings)
        self.feed.on_event = self._on_event
        if observer is not None:
            self.feed.on_message = observer.on_message
        self._seen_exec: set[str] = set()
        self._exchange_ids: dict[str, str] = {}  # exchange order id → our trade id
        self._acked: dict[str, float] = {}  # trade id → time.monotonic() of the create ack
        self._finals: dict[str, _Final] = {}
        self._orphans: dict[str, list[Execution]] = {}  # executions of not-yet-acknowledged ids
        self._feed_errors = 0
        self._created: dict[str, asyncio.Event] = {}  # set once an order's create has been answered
        self._last_bar_ts: int | None = None
        self._max_bars: int | None = None
        self._early: list[KlineEvent] = []  # bars that arrived during the warm-up
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._trading = False
        self._warming = False
        self._blind: set[str] = set()  # streams down since their last reconnect (and reconcile)
        adapter.observers.append(self._observe_headers)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # ------------------------------------------------------------------ the session
    async def run(self, max_bars: int | None = None, warmup: int = 200) -> LiveStatus:
        """Trade until `max_bars` new bars were handled (None: until `stop()`); the `warmup`
        bars before them only feed the indicators and the risk model."""
        await self.adapter.load_markets()
        if self.recorder is not None:
            await self._scope_ledger()
            await self._reconcile_ledger()
        feed = self.feed
        self._max_bars = max_bars
        start = getattr(self.engine.risk, "start_live", None)
        if start is not None:
            start([self.symbol], _interval_ms(self.interval))
        senders: list[asyncio.Task[None]] = []
        ticker = None
        started = False
        try:
            self._warming = True
            await feed.start()  # subscribe before the warm-up read: no bar falls in between
            if not await feed.wait_connected(self.stream_settings.connect_timeout_s):
                self._error(f"streams not up after {self.stream_settings.connect_timeout_s:.0f} s")
            self._sync_status()
            self._warm_up(await feed.history(warmup))
            self.strategy.on_start()
            started = True
            senders = [asyncio.create_task(self._send_loop(), name=f"sender-{i}") for i in range(SENDERS)]
            ticker = asyncio.create_task(self._tick_loop(), name="live-ticker")
            self._warming, self._trading = False, max_bars is None or max_bars > 0
            # bars that closed while warming up are history by now: the strategy learns them and
            # decides once, on the latest (trading each would send a burst of stale orders)
            early, self._early = self._early, []
            fresh = [e for e in early if self._last_bar_ts is None or e.bar.ts > self._last_bar_ts]
            self._warm_up([e.bar for e in fresh[:-1]])
            for event in fresh[-1:]:
                self._handle(event)
            while self._trading and not self._stopping.is_set():
                await self._wake.wait()
                self._wake.clear()
            self._trading = False
            await self._settle()
        finally:
            self._trading = self._warming = False
            if started:
                self.strategy.on_stop()
            for task in (ticker, *senders):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._sync_status()  # as the session ended, before the sockets close
            if self._own_feed:
                await feed.close()
        if self.on_update is not None:
            self.on_update(self.status)
        return self.status

    def _warm_up(self, bars: list[Bar]) -> None:
        observe = getattr(self.engine.risk, "observe", None)
        for bar in bars:
            self.frames.update(bar)
            if observe is not None:
                observe(bar.ts, {bar.symbol: bar.close})
            self._last_bar_ts = bar.ts
            self.status.last_price = bar.close

    async def reconcile(self) -> None:
        """Bring the engine's orders and fills in line with the exchange's, over REST."""
        await self.feed.reconcile("manual")

    async def _settle(self) -> None:
        """After the last bar: send what is queued, let the market orders we sent complete
        (up to `settle_seconds`), then reconcile once over REST."""
        deadline = time.monotonic() + self.settle_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.venue.outbox.join(), self.settle_seconds)
        while self._in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the streams' events keep arriving meanwhile
        try:
            await asyncio.wait_for(self.feed.reconcile("final"), self.stream_settings.reconcile_timeout_s)
        except Exception as exc:
            self._error(f"final reconciliation: {type(exc).__name__}: {exc}")

    def _in_flight(self) -> bool:
        """Orders still expected to finish by themselves: unacknowledged, or market orders."""
        return any(
            o.trade_id not in self._acked or o.type is OrderType.MARKET
            for o in self.venue.open_orders[self.symbol]
        )

    # ------------------------------------------------------------------ events
    def _on_event(self, event: object) -> None:
        """The feed's handler, called inline as each event is decoded."""
        if self._warming and isinstance(event, KlineEvent):
            self._early.append(event)
        else:
            self._handle(event)

    def _handle(self, event: object) -> None:
        try:
            if isinstance(event, KlineEvent):
                if self._trading and (self._last_bar_ts is None or event.bar.ts > self._last_bar_ts):
                    self._on_bar(event.bar)
                    if self.observer is not None:
                        self.observer.on_bar(event.bar, event.received_ns)
                    if self._max_bars is not None and self.status.bars >= self._max_bars:
                        self._trading = False
                        self._wake.set()
                elif not self._trading:
                    self.status.last_price = event.bar.close
            elif isinstance(event, ExecutionsEvent):
                self._on_executions(event.executions)
            elif isinstance(event, OrdersEvent):
                self._on_orders(event.orders)
            elif isinstance(event, ReconciledEvent):
                self._on_reconciled(event)
                self._see_again("private", f"private stream back, {event.reason} reconciliation done")
            elif isinstance(event, StateEvent):
                self._sync_status()
                self._on_stream_state(event)
            elif event is _TICK:
                self._sync_status()
                poll = getattr(self.engine.risk, "poll", None)
                if poll is not None and self._trading:
                    poll(self.clock.now())
                if self.status.last_price == self.status.last_price:
                    self._mark(self.status.last_price)
                if self.observer is not None:
                    self.observer.on_status(self)
                if self.on_update is not None:
                    self.on_update(self.status)
        except Exception as exc:  # a bug or a surprise from the exchange: say so, keep going
            self._error(f"{type(exc).__name__}: {exc}")

    def _on_bar(self, bar: Bar) -> None:
        self._last_bar_ts = bar.ts
        if self.recorder is not None:
            self.recorder.market_ts = bar.ts  # what a guard change this bar triggers is stamped with
        self.status.bars += 1
        self.status.bar_ts = bar.ts
        self.status.last_price = bar.close
        observe = getattr(self.engine.risk, "observe", None)
        if observe is not None:
            observe(bar.ts, {bar.symbol: bar.close})
        self.engine.risk.on_step(bar.ts)
        self.engine.frames[bar.symbol] = self.frames.update(bar)
        self.strategy.on_bar(bar)
        self._mark(bar.close)

    def _mark(self, close: float) -> None:
        wallet, held = self.portfolio.snapshot()
        equity = wallet + sum(q * close - c for _, q, c in held)
        self.status.equity = equity
        self.status.peak = equity if not self.status.peak >= equity else self.status.peak
        self.status.position = self.portfolio.position(self.symbol)

    def _order_of(self, link_id: str, order_id: str) -> Order | None:
        order = self.venue.orders.get(link_id) if link_id else None
        if order is None and order_id:
            order = self.venue.orders.get(self._exchange_ids.get(order_id, ""))
        return order

    def _on_executions(self, executions: Iterable[Execution]) -> None:
        """New executions become engine fills exactly once."""
        fills, touched = [], []
        for ex in executions:
            if ex.exec_id in self._seen_exec:
                continue
            order = self._order_of(ex.order_link_id, ex.order_id)
            if order is None:  # not ours, or its create acknowledgement is still on the way
                if ex.order_id and len(self._orphans) < 10_000:
                    self._orphans.setdefault(ex.order_id, []).append(ex)
                continue
            self._seen_exec.add(ex.exec_id)
            self._record(order, ex)
            touched.append(order)
            fills.append(
                Fill(
                    ex.exec_id,
                    order.trade_id,
                    order.symbol,
                    ex.side,
                    ex.qty,
                    ex.price,
                    ex.fee,
                    Liquidity.MAKER if ex.is_maker else Liquidity.TAKER,
                    ex.ts,
                )
            )
        if fills:
            self.status.fills += len(fills)
            for fill in fills:
                log.info(
                    "fill",
                    extra={
                        "trade_id": fill.trade_id,
                        "exec_id": fill.exec_id,
                        "side": str(fill.side),
                        "qty": str(fill.qty),
                        "price": str(fill.price),
                        "fee": str(fill.fee),
                    },
                )
            self.engine.on_fills(fills)
            if self.recorder is not None:
                self.recorder.fills(fills)
                self._crash("after_fill")
                for order in {o.trade_id: o for o in touched}.values():
                    self.recorder.event(
                        order.trade_id, "execution", str(order.status), {"filled_qty": str(order.filled_qty)},
                        self.clock.now(), {"filled_qty": order.filled_qty, "status": str(order.status)},
                    )  # fmt: skip
                self._snapshot()
            if self.observer is not None:
                self.observer.on_fills(fills)
            for order in touched:
                self._settle_order(order)
            if self.status.last_price == self.status.last_price:
                self._mark(self.status.last_price)

    def _record(self, order: Order, ex: Execution) -> None:
        try:
            order.record_fill(ex.qty, ex.price, ex.fee, ex.ts)
        except IllegalTransition:  # the exchange's word wins: book it, say so
            order.filled_qty += ex.qty
            order.filled_value += ex.qty * ex.price
            order.fees += ex.fee
            self._error(f"execution {ex.exec_id} on {order.status} order {order.trade_id}")

    def _settle_order(self, order: Order) -> None:
        """Close `order` once its fills match what the exchange says is final."""
        if order not in self.venue.open_orders[order.symbol]:
            return
        final = self._finals.get(order.trade_id)
        if order.status is OrderStatus.FILLED:
            self.venue.close(order, OrderStatus.FILLED, self.clock.now())
        elif final is not None and order.filled_qty >= final.cum_qty:
            reason = f"exchange: {final.reason}" if final.reason else "exchange"
            status = final.status
            if status is OrderStatus.FILLED:  # all executions in, yet short of the order's qty
                status = OrderStatus.CANCELLED
            if status is OrderStatus.REJECTED and order.filled_qty:
                status = OrderStatus.CANCELLED
            self.venue.close(order, status, self.clock.now(), reason)
        else:
            return
        self._finals.pop(order.trade_id, None)

    def _on_orders(self, updates: Iterable[OrderUpdate]) -> None:
        for update in updates:
            order = self._order_of(update.order_link_id, update.order_id)
            if order is None:
                continue
            if update.order_id and update.order_id not in self._exchange_ids:
                self._exchange_ids[update.order_id] = order.trade_id
            status = FINAL_STATUS.get(update.status)
            if status is None:
                continue
            self._finals[order.trade_id] = _Final(status, update.cum_exec_qty, update.reject_reason)
            self._settle_order(order)

    def _on_stream_state(self, event: StateEvent) -> None:
        """A stream down means the session is blind (fills, prices): no new exposure until it is
        back; the public one on reconnect, the private one once the reconcile after it is done."""
        if event.state is not StreamState.CONNECTED:
            if event.stream not in self._blind:
                self._blind.add(event.stream)
                detail = f"{event.stream} stream down" + (f": {event.error}" if event.error else "")
                log.warning("stream down: no new exposure", extra={"detail": detail})
                self._unclear(detail, f"stream:{event.stream}")
        elif event.stream == "public":
            self._see_again("public", "public stream back")

    def _see_again(self, stream: str, reason: str) -> None:
        if stream not in self._blind or self.feed.states.get(stream) != str(StreamState.CONNECTED):
            return
        self._blind.discard(stream)
        log.warning("stream back", extra={"detail": reason})
        clear = getattr(self.engine.risk, "clear_unknown_state", None)
        if clear is not None:
            clear(reason, self.clock.now(), cause=f"stream:{stream}")

    def _on_reconciled(self, event: ReconciledEvent) -> None:
        """Orders the exchange no longer lists as open are done: every execution they had was
        read after that list, so it is booked by now."""
        self.status.reconciliations += 1
        listed = {u.order_link_id for u in event.open_orders} | {u.order_id for u in event.open_orders}
        for order in list(self.venue.open_orders[self.symbol]):
            acked = self._acked.get(order.trade_id)
            if acked is None or acked >= event.started - LIST_LAG_S or order.trade_id in listed:
                continue
            if any(self._exchange_ids.get(i) == order.trade_id for i in listed):
                continue
            final = self._finals.pop(order.trade_id, None)
            if final is not None and final.cum_qty > order.filled_qty:
                self._error(
                    f"order {order.trade_id}: exchange executed {final.cum_qty}, booked {order.filled_qty}"
                )
            done = OrderStatus.FILLED if order.filled_qty == order.qty else OrderStatus.CANCELLED
            self.venue.close(order, done, self.clock.now())
        if event.consistent:
            ours = self.portfolio.position(self.symbol)
            theirs = event.positions.get(self.symbol, ZERO)
            if ours != theirs:
                self._error(
                    f"position after {event.reason} reconciliation: in memory {ours}, exchange {theirs}"
                )

    # ------------------------------------------------------------------ orders out
    async def _send_loop(self) -> None:
        outbox = self.venue.outbox
        while True:
            action, order = await outbox.get()
            try:
                await self._send(action, order)
            except Exception as exc:
                self._error(f"{action} {order.trade_id}: {type(exc).__name__}: {exc}")
            finally:
                outbox.task_done()

    async def _send(self, action: str, order: Order) -> None:
        """One request to the exchange; a refused create becomes a rejected order. A cancel is
        confirmed by the order stream (or the next reconciliation), with its executed part."""
        if action == "create":
            done = self._created.setdefault(order.trade_id, asyncio.Event())
            self._crash("before_send")
            try:
                placed = await self.adapter.create_order(order)
            except Exception as exc:
                self.venue.close(order, OrderStatus.REJECTED, self.clock.now(), f"exchange: {exc}")
                # a refused order is never quiet: the log, the view's error row and the summary
                self._error(f"order {order.trade_id} rejected by the exchange: {type(exc).__name__}: {exc}")
                return
            finally:
                done.set()
            self._crash("after_send")
            exchange_id = str(placed.get("id") or "")
            self._acked[order.trade_id] = time.monotonic()
            if self.recorder is not None:
                self.recorder.event(
                    order.trade_id, "acknowledged", None, {"order_id": exchange_id}, self.clock.now(),
                    {"exchange_order_id": exchange_id},
                )  # fmt: skip
            log.info(
                "order placed",
                extra={
                    "trade_id": order.trade_id,
                    "order_id": exchange_id,
                    "side": str(order.side),
                    "qty": str(order.qty),
                    "type": str(order.type),
                    "reduce_only": order.reduce_only,
                },
            )
            if exchange_id:
                self._exchange_ids[exchange_id] = order.trade_id
                orphans = self._orphans.pop(exchange_id, None)
                if orphans:
                    self._on_executions(orphans)
        else:
            created = self._created.get(order.trade_id)
            if created is not None:  # another sender may still be placing it
                await created.wait()
            if not order.status.is_open:
                return
            with contextlib.suppress(OrderNotFound):  # already done: the streams will say how
                await self.adapter.cancel_order(order.trade_id, order.symbol)

    async def _tick_loop(self) -> None:
        last_snapshot = time.monotonic()
        while True:
            await asyncio.sleep(self.poll_seconds)
            self._handle(_TICK)
            if time.monotonic() - last_snapshot >= self.snapshot_seconds:
                last_snapshot = time.monotonic()
                self._snapshot()

    def _snapshot(self, source: str = "engine") -> None:
        """The position and equity as this session books them, into the ledger."""
        if self.recorder is None:
            return
        account = self.portfolio.account
        held = account.positions.get(self.symbol)
        price = self.status.last_price
        mark = to_decimal(price) if price == price else None
        unrealised = held.unrealised_pnl(mark) if held is not None and mark is not None else Decimal(0)
        position = {
            "symbol": self.symbol, "source": source, "qty": held.qty if held else Decimal(0),
            "cost": held.cost if held else Decimal(0),
            "entry_price": held.avg_entry if held is not None and held.qty else None,
            "mark_price": mark, "realised_pnl": held.realised_pnl if held else Decimal(0),
            "unrealised_pnl": unrealised,
        }  # fmt: skip
        equity = {
            "balance": account.wallet_balance,
            "equity": account.wallet_balance + unrealised,
            "unrealised_pnl": unrealised,
        }
        self.recorder.snapshot([position], equity, self.clock.now())

    # ------------------------------------------------------------------ status
    def _sync_status(self) -> None:
        feed = self.feed
        self.status.connected = feed.connected
        self.status.reconnects = feed.reconnects
        self.status.streams = feed.states
        new = feed.error_count - self._feed_errors
        if new > 0:  # the feed's own troubles: disconnects, failed reconciliations
            for message in feed.errors[-new:]:
                self._error(message)
            self._feed_errors = feed.error_count

    async def _scope_ledger(self) -> None:
        """Which venue and account this session's ledger rows belong to (and the instrument's rules)."""
        assert self.recorder is not None
        try:
            self.recorder.venue, self.recorder.account = await self.adapter.identity()
        except Exception as exc:
            self._error(f"cannot tell the venue and account: {type(exc).__name__}: {exc}")
        inst = self.instrument
        self.recorder.instrument(
            {
                "symbol": inst.symbol, "base_coin": inst.base_coin, "quote_coin": inst.quote_coin,
                "tick_size": inst.tick_size, "qty_step": inst.qty_step, "min_qty": inst.min_qty,
                "min_notional": inst.min_notional, "max_leverage": inst.max_leverage,
                "maker_fee": inst.maker_fee, "taker_fee": inst.taker_fee,
                "maintenance_margin_rate": inst.maintenance_margin_rate,
            }
        )  # fmt: skip

    async def _reconcile_ledger(self) -> None:
        """Before trading: the ledger brought in line with the exchange (see engine.reconcile)."""
        assert self.recorder is not None
        if self.recorder.outage is not None:
            self._error(f"ledger not reconciled at start: {self.recorder.outage}")
            return
        try:
            check = await reconcile_ledger(self.adapter, self.recorder, self.symbol)
        except Exception as exc:
            self._error(f"ledger reconciliation: {type(exc).__name__}: {exc}")
            return
        self.ledger_check = check
        log.info(
            "ledger reconciled",
            extra={
                "open_orders": check.open_orders,
                "never_sent": check.never_sent,
                "updated": check.updated,
                "fills_inserted": check.fills_inserted,
                "ledger_position": str(check.ledger_position),
                "exchange_position": str(check.exchange_position),
            },
        )
        problems = []
        if check.never_sent:
            problems.append(f"{len(check.never_sent)} order(s) never reached the exchange, marked Rejected")
        if check.fills_inserted:
            problems.append(f"{check.fills_inserted} execution(s) missing from the ledger, inserted")
        if not check.consistent:
            problems.append(
                f"position: ledger {check.ledger_position}, exchange {check.exchange_position} "
                f"(venue {self.recorder.venue or '?'}, account {self.recorder.account or '?'})"
            )
        for problem in problems:
            self._error(f"ledger reconciliation: {problem}")
        if problems and self.alert is not None:
            self.alert(f"{self.symbol} ledger reconciliation at start: " + "; ".join(problems))
        self._adopt(check)

    def _adopt(self, check: LedgerReconciliation) -> None:
        """The session starts from what the exchange holds, never from zero: its in-memory position
        becomes the exchange's (recorded as an "adopted" snapshot). One the database ledger cannot
        explain also blocks new exposure (REDUCING) until a person resumes, unless configured to
        adopt it as it is."""
        held = check.exchange_position
        if held:
            self.portfolio.adopt(self.symbol, held, check.exchange_entry_price)
            self.status.position = self.portfolio.position(self.symbol)
            adopted = {
                "in_memory_position": str(held),
                "database_ledger_position": str(check.ledger_position),
                "entry_price": str(check.exchange_entry_price),
            }
            log.warning("position adopted from the exchange", extra=adopted)
            self._snapshot(source="adopted")
        if check.consistent or self.adopt_unexplained:
            return
        detail = (
            f"position the ledger cannot explain: database ledger {check.ledger_position}, "
            f"exchange {check.exchange_position} (adopted in memory; resume once checked)"
        )
        self._unclear(detail, "position")

    def _unclear(self, detail: str, cause: str) -> None:
        """Tell the risk guard (if the engine has one) that the session cannot see `cause` clearly."""
        unknown = getattr(self.engine.risk, "unknown_state", None)
        if unknown is not None:
            unknown(detail, self.clock.now(), cause=cause)

    def _crash(self, point: str) -> None:
        """Chaos testing: die here, as a power cut would, when METHTRADER_CRASH_AT names `point`."""
        if self._crash_at == point:
            log.error("crashing on purpose", extra={"point": point})
            os._exit(70)

    def _order_changed(self, order: Order, event: str) -> None:
        if self.recorder is not None and event != "submitted":  # the write-ahead covered "submitted"
            status = str(order.status)
            update = {"status": status, "filled_qty": order.filled_qty, "reject_reason": order.reject_reason}
            self.recorder.event(
                order.trade_id, event, status, {"reason": order.reject_reason}, self.clock.now(), update
            )
        if self.observer is not None:
            self.observer.on_order(order, event)

    def _write_ahead(self, order: Order, ts: int) -> None:
        """Commit the order and what produced it before it can be sent (see LiveVenue.submit)."""
        assert self.recorder is not None
        risk = self.engine.risk
        guard_order = order.trade_id in getattr(risk, "liquidation_ids", ())
        lineage = {
            **self.lineage,
            **(GUARD_LINEAGE if guard_order else self._strategy_lineage),
            "risk_snapshot": getattr(risk, "snapshot", dict)(),
        }
        decision = None if guard_order else getattr(self.strategy, "last_decision", None)
        if decision is not None and self.blobs is not None:  # a model's decision: its exact inputs
            lineage["features_hash"] = self.blobs.put(decision.blob())
            lineage["model_run_id"] = decision.run_id
            lineage["model_name"] = decision.model_name
            lineage["model_version"] = decision.model_version
        self.recorder.order(order, lineage, ts)

    def _error(self, message: str) -> None:
        self.status.errors = [*self.status.errors[-4:], message]
        log.warning("live session error", extra={"detail": message})

    def _observe_headers(self, meta: ResponseMeta) -> None:
        headers = {k.lower(): v for k, v in meta.headers.items()}
        try:
            limit = int(headers["x-bapi-limit"])
            remaining = int(headers["x-bapi-limit-status"])
        except (KeyError, ValueError):
            return
        if limit > 0:
            self.status.utilisation[meta.path] = 1 - remaining / limit


def _interval_ms(interval: str) -> int:
    units = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
    return int(interval[:-1]) * units[interval[-1]]
