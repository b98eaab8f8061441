"""The paper/live runner: the same Engine, a wall clock, and Bybit (or the local simulator) as the
venue. Market data, order requests and fills cross an async edge; the engine itself stays
synchronous and does no I/O.

A bar is handled once the next one has started (so an exchange's still-forming kline is never
traded on); order requests queue in `LiveVenue.outbox` and leave through the adapter; fills are
polled from the execution list, de-duplicated by execution id, and fed to the engine.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from methtrader.engine.clock import WallClock
from methtrader.engine.engine import Engine
from methtrader.engine.ids import RandomIds
from methtrader.engine.portfolio import Portfolio
from methtrader.engine.risk_hook import NoRisk, RiskHook
from methtrader.exchange.bybit.adapter import BybitAdapter, ResponseMeta
from methtrader.model import Bar, Fill, Instrument, Liquidity, Order, OrderStatus, Side
from methtrader.model.instrument import to_decimal
from methtrader.strategies.base import Strategy
from methtrader.strategies.indicators import StreamFrames


class LiveVenue:
    """The engine's synchronous view of a remote exchange: orders are accepted into `outbox`
    (status New) and the async side sends them; the exchange's answers update them later."""

    def __init__(self, symbols: list[str]) -> None:
        self.open_orders: dict[str, list[Order]] = {s: [] for s in symbols}
        self.orders: dict[str, Order] = {}
        self.outbox: asyncio.Queue[tuple[str, Order]] = asyncio.Queue()

    def submit(self, order: Order, ts: int) -> Order:
        if order.trade_id in self.orders:
            return self.orders[order.trade_id]
        order.created_ts = order.updated_ts = ts
        self.orders[order.trade_id] = order
        self.open_orders[order.symbol].append(order)
        self.outbox.put_nowait(("create", order))
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

    @property
    def drawdown(self) -> float:
        return 1 - self.equity / self.peak if self.peak > 0 else 0.0


class LiveRunner:
    """Drive one strategy on one symbol through a BybitAdapter until `max_bars` bars or `stop()`."""

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
    ) -> None:
        self.strategy = strategy
        self.adapter = adapter
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.interval = interval
        self.poll_seconds = poll_seconds
        self.on_update = on_update
        self.venue = LiveVenue([self.symbol])
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
        self._seen_exec: set[str] = set()
        self._exchange_ids: dict[str, str] = {}  # exchange order id → our trade id
        self._last_bar_ts: int | None = None
        self._stopping = asyncio.Event()
        adapter.observers.append(self._observe_headers)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, max_bars: int | None = None, warmup: int = 200) -> LiveStatus:
        """Trade until `max_bars` new bars were handled (None: until `stop()`); the `warmup`
        bars before them only feed the indicators and the risk model."""
        await self.adapter.load_markets()
        self.status.connected = True
        start = getattr(self.engine.risk, "start_live", None)
        if start is not None:
            start([self.symbol], _interval_ms(self.interval))
        await self._warm_up(warmup)
        self.strategy.on_start()
        try:
            while not self._stopping.is_set() and (max_bars is None or self.status.bars < max_bars):
                await self._cycle()
                await asyncio.sleep(self.poll_seconds)
            await self._drain()
        finally:
            self.strategy.on_stop()
        return self.status

    async def _cycle(self) -> None:
        try:
            await self._poll_bars()
            await self._drain()
            await self._poll_fills()
            self.status.connected = True
        except Exception as exc:  # a network or exchange error: say so, keep going, reconcile next
            self.status.connected = False
            self.status.errors = [*self.status.errors[-4:], f"{type(exc).__name__}: {exc}"]
        if self.on_update is not None:
            self.on_update(self.status)

    async def _warm_up(self, bars: int) -> None:
        candles = await self._candles(bars + 1)
        observe = getattr(self.engine.risk, "observe", None)
        for ts, o, h, low, c, v in candles[:-1]:
            bar = Bar(self.symbol, int(ts), float(o), float(h), float(low), float(c), float(v))
            self.frames.update(bar)
            if observe is not None:
                observe(bar.ts, {bar.symbol: bar.close})
            self._last_bar_ts = bar.ts
            self.status.last_price = bar.close

    async def _candles(self, limit: int) -> list[list[float]]:
        market = self.adapter.market_symbol(self.symbol)
        return await self.adapter._call(
            lambda: self.adapter.client.fetch_ohlcv(market, self.interval, None, limit)
        )

    async def _poll_bars(self) -> None:
        candles = await self._candles(5)
        closed = [c for c in candles[:-1] if self._last_bar_ts is None or c[0] > self._last_bar_ts]
        for ts, o, h, low, c, v in closed:
            self._on_bar(Bar(self.symbol, int(ts), float(o), float(h), float(low), float(c), float(v)))

    def _on_bar(self, bar: Bar) -> None:
        self._last_bar_ts = bar.ts
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

    async def _drain(self) -> None:
        """Send what the engine queued; the exchange's refusals become rejected orders."""
        while not self.venue.outbox.empty():
            action, order = self.venue.outbox.get_nowait()
            try:
                if action == "create":
                    placed = await self.adapter.create_order(order)
                    self._exchange_ids[str(placed["id"])] = order.trade_id
                else:
                    await self.adapter.cancel_order(order.trade_id, order.symbol)
                    self.venue.close(order, OrderStatus.CANCELLED, self.clock.now())
            except Exception as exc:
                if action == "create":
                    self.venue.close(order, OrderStatus.REJECTED, self.clock.now(), f"exchange: {exc}")
                else:
                    raise

    async def reconcile(self) -> None:
        """Bring the engine's orders and fills in line with the exchange's (REST)."""
        await self._poll_fills()

    async def _poll_fills(self) -> None:
        """New executions become engine fills exactly once; orders the exchange no longer lists
        as open are closed here (filled, or cancelled like a market order's unfilled rest)."""
        # open orders first: an order missing from that list has all its executions in the
        # list fetched after it, so closing it below can never race a late fill
        working = {str(o.get("clientOrderId")) for o in await self.adapter.fetch_open_orders(self.symbol)}
        trades = await self.adapter.fetch_my_trades(self.symbol)
        fills = []
        for trade in sorted(trades, key=lambda t: (t["timestamp"], str(t["id"]))):
            exec_id = str(trade["id"])
            trade_id = trade.get("clientOrderId") or self._exchange_ids.get(str(trade["order"]))
            order = self.venue.orders.get(trade_id or "")
            if exec_id in self._seen_exec or order is None:
                continue
            self._seen_exec.add(exec_id)
            qty, price = to_decimal(str(trade["amount"])), to_decimal(str(trade["price"]))
            fee = to_decimal(str((trade.get("fee") or {}).get("cost") or 0))
            order.record_fill(qty, price, fee, int(trade["timestamp"]))
            fills.append(
                Fill(
                    exec_id,
                    order.trade_id,
                    order.symbol,
                    Side.BUY if trade["side"] == "buy" else Side.SELL,
                    qty,
                    price,
                    fee,
                    Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER,
                    int(trade["timestamp"]),
                )
            )
        if fills:
            self.status.fills += len(fills)
            self.engine.on_fills(fills)
        for order in list(self.venue.open_orders[self.symbol]):
            if order.trade_id not in working and order.trade_id in self._exchange_ids.values():
                done = OrderStatus.FILLED if order.filled_qty == order.qty else OrderStatus.CANCELLED
                self.venue.close(order, done, self.clock.now())
        if self.status.last_price == self.status.last_price:
            self._mark(self.status.last_price)

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
