"""`SimExchange`: accounts (one MatchingEngine per UID), API keys and a market-data replay.

Wall-clock milliseconds are the exchange's time (clients sign with real time; orders, fills and
`/v5/market/time` use it). The replayed bars keep their own historical timestamps: klines and
tickers report them, and `speed` × real time sets how fast they advance.

Between two steps the last shown bar has closed and the next one has opened. Market orders (and
limits that cross its open) fill at once, as on Bybit, at the same price a backtest gives them (the
next bar's open); funding is due when a bar opens. Over the bar's duration its price moves along
an intrabar path (path.py): tickers and the order book show the price on it, and a resting limit
fills the moment the path reaches it, at the price and fee the bar-based backtest gives it. What
the path has not filled, the step that closes the bar matches as before. An order arriving later
in the bar is still matched on arrival against the bar's open, the only price a backtest knows
between bars; once resting, it fills at the path's next move if the bar has already traded through.
"""

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from methtrader.exchange.sim.errors import (
    NOT_MODIFIED,
    ORDER_NOT_FOUND,
    PARAMS,
    BybitError,
    rejection,
)
from methtrader.exchange.sim.ids import uuid_ids
from methtrader.exchange.sim.keys import KeyStore
from methtrader.exchange.sim.keys import add_key as _add_key
from methtrader.exchange.sim.limits_table import RateLimiter, RateLimits
from methtrader.exchange.sim.matching import MatchingEngine, SimConfig, StepBar
from methtrader.exchange.sim.path import IntrabarPath
from methtrader.exchange.sim.payloads import POST_ONLY_TAKE, OrderMeta
from methtrader.model import (
    BarSeries,
    Fill,
    Instrument,
    Order,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from methtrader.model.bar import HOUR_MS

FUNDING_MS = 8 * HOUR_MS
DEFAULT_STATE_DIR = "var/sim"
PATH_STEPS = 4  # moves along the intrabar path per bar at speed > 0, the bar's close included

# (kind, uid or None for public, payload); kinds: "bar" (a bar closed), "tick" (the price moved
# along the path), "order", "execution", "position", "wallet"
Event = tuple[str, str | None, object]
Listener = Callable[[Event], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SimAccount:
    uid: str
    engine: MatchingEngine
    instance_id: str  # of the SimExchange: ids it derives are unique to this venue instance
    meta: dict[str, OrderMeta] = field(default_factory=dict)  # trade_id -> ids
    by_order_id: dict[str, str] = field(default_factory=dict)  # orderId -> trade_id
    link_ids: set[str] = field(default_factory=set)
    seq: int = 0

    def meta_of(self, trade_id: str) -> OrderMeta:
        meta = self.meta.get(trade_id)
        if meta is None:  # an engine-made order (liquidation): give it stable ids
            oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.instance_id}/{self.uid}/{trade_id}"))
            meta = self.meta[trade_id] = OrderMeta(oid, "")
            self.by_order_id[oid] = trade_id
        return meta

    def find(self, order_id: str | None, link_id: str | None) -> Order | None:
        trade_id = None
        if order_id:
            trade_id = self.by_order_id.get(order_id)
        elif link_id and link_id in self.link_ids:
            trade_id = link_id
        if trade_id is None:
            return None
        order = self.engine.orders.get(trade_id)
        if order is not None and link_id and self.meta_of(trade_id).order_link_id != link_id:
            return None
        return order


def _decimal(params: dict[str, object], name: str, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise BybitError(PARAMS, f"params error: {name} is required")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise BybitError(PARAMS, f"params error: {name} invalid") from exc
    if not value.is_finite():
        raise BybitError(PARAMS, f"params error: {name} invalid")
    return value


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1")


def check_category(params: dict[str, object], required: bool = True) -> None:
    category = params.get("category")
    if category is None and not required:
        return
    if category != "linear":
        raise BybitError(PARAMS, "params error: category only support linear")


class SimExchange:
    """The simulated venue. Thread-safe: every public method takes the exchange's lock.

    Lifecycle: construct, `await start()` (launches the replay task when speed > 0), `await stop()`.
    Tests may call `advance_path()` and `step()` directly instead of running the clock.

    `instance_id` (UUID4 hex) is new for every SimExchange object: accounts, positions and fills
    live in memory only (the state dir keeps just the keys), so two instances are two venues, and
    a ledger must not compare one's positions with the other's. Execution ids are UUIDs, as Bybit's.
    """

    def __init__(
        self,
        series: BarSeries,
        instrument: Instrument,
        *,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        cash: Decimal = Decimal(100_000),
        speed: float = 60.0,
        history: int = 500,
        config: SimConfig | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        if len(series) < 2:
            raise ValueError("the replay needs at least two bars")
        if series.symbol != instrument.symbol:
            series = series.with_symbol(instrument.symbol)
        self.series = series
        self.instrument = instrument
        self.instruments = {instrument.symbol: instrument}
        self.state_dir = Path(state_dir)
        self.keys = KeyStore(self.state_dir)
        self.cash = cash
        self.speed = speed
        self.config = config or SimConfig()
        self.limiter = RateLimiter(limits)
        self.interval_ms = series.median_interval_ms
        self.index = max(0, min(history, len(series) - 1))
        self.accounts: dict[str, SimAccount] = {}
        self.lock = threading.RLock()
        self.instance_id = uuid.uuid4().hex
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._path: IntrabarPath | None = None  # of the live bar, made when first needed
        self.path_fraction = 0.0  # how much of the live bar's duration has gone by

    # ----------------------------------------------------------------- lifecycle
    @property
    def finished(self) -> bool:
        return self.index >= len(self.series) - 1

    async def start(self) -> None:
        if self.speed > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-replay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # Deadlines from one start, so sleeping late on a busy loop does not slow the replay down
        delay = self.interval_ms / 1000 / self.speed / PATH_STEPS
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self.finished:
            for k in range(1, PATH_STEPS + 1):
                due += delay
                await asyncio.sleep(max(0.0, due - loop.time()))
                if k < PATH_STEPS:
                    self.advance_path(k / PATH_STEPS)
            self.step()

    def add_key(self, uid: str | None = None) -> tuple[str, str, str]:
        return _add_key(self.state_dir, uid)

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, kind: str, uid: str | None, payload: object) -> None:
        for listener in list(self._listeners):
            listener((kind, uid, payload))

    # ----------------------------------------------------------------- market data
    @property
    def bar_ts(self) -> int:
        return int(self.series.ts[self.index])

    def step_bar(self, i: int, funding_due: bool = True) -> StepBar:
        """Bar `i` for the engines; `funding_due=False` leaves out the funding due at its open."""
        s = self.series
        funding = 0
        if i > 0 and funding_due:
            funding = int(s.ts[i]) // FUNDING_MS - int(s.ts[i - 1]) // FUNDING_MS
        return StepBar(
            s.symbol,
            float(s.open[i]),
            float(s.high[i]),
            float(s.low[i]),
            float(s.close[i]),
            float(s.volume[i]),
            funding,
        )

    def live_bar(self) -> StepBar:
        """The bar trading now, whose open is the current price: the one after the last shown
        bar, or once the replay has run out the last bar, held flat at its close."""
        if not self.finished:
            return self.step_bar(self.index + 1, funding_due=False)
        last = self.step_bar(self.index, funding_due=False)
        last.open = last.high = last.low = last.close
        return last

    def price_now(self) -> float:
        """The price the live bar trades at now, on its intrabar path (its open right after a
        step; the last close once the replay has run out)."""
        with self.lock:
            return self._live_path().price(self.path_fraction)

    def _live_path(self) -> IntrabarPath:
        if self._path is None:
            self._path = IntrabarPath(self.live_bar())
        return self._path

    def advance_path(self, fraction: float) -> bool:
        """Move the live bar's price along its path to `fraction` of the bar's duration (never
        back); resting orders the path reaches fill now, as the bar's step would fill them.
        False when there is nothing to move (the replay has run out, or it is there already)."""
        with self.lock:
            fraction = min(max(fraction, 0.0), 1.0)
            if self.finished or fraction <= self.path_fraction:
                return False
            self.path_fraction = fraction
            self._emit("tick", None, fraction)
            self._fill_along_path(now_ms())
            return True

    def _fill_along_path(self, ts: int) -> None:
        bar = self.live_bar()
        traded = self._live_path().traded(self.path_fraction)
        for account in self.accounts.values():
            if not account.engine.open_orders[bar.symbol]:
                continue
            before = {o.trade_id: o.status for o in self._open(account)}
            fills = account.engine.match_path(ts, bar, traded)
            if fills:
                self._after_fills(account, fills, before)

    def step(self) -> bool:
        """Advance the replay by one bar for every account: the bar closes (resting orders it
        reaches and its path has not filled, fill), then the next one opens (funding due at its
        open is paid) and its path starts at that open. False when the data has run out."""
        with self.lock:
            if self.finished:
                return False
            self.index += 1
            self._path, self.path_fraction = None, 0.0
            bar = self.step_bar(self.index, funding_due=False)  # paid when it opened
            opening = [self.step_bar(self.index + 1)] if not self.finished else []
            ts = now_ms()
            self._emit("bar", None, self.index)
            for account in self.accounts.values():
                before = {o.trade_id: o.status for o in self._open(account)}
                fills = account.engine.process_step(ts, [bar])
                account.engine.pay_funding(ts, opening)
                self._after_fills(account, fills, before)
            if not self.finished:
                self._fill_along_path(ts)  # resting limits the next bar opens beyond fill at its open
            return True

    def _open(self, account: SimAccount) -> list[Order]:
        return [o for orders in account.engine.open_orders.values() for o in orders]

    def _after_fills(self, account: SimAccount, fills: list[Fill], before: dict[str, OrderStatus]) -> None:
        changed = [
            account.engine.orders[t]
            for t, status in before.items()
            if account.engine.orders[t].status != status
        ]
        changed += [account.engine.orders[f.trade_id] for f in fills if f.trade_id not in before]
        if fills:
            account.seq += len(fills)
            self._emit("execution", account.uid, fills)
        if changed:
            self._emit("order", account.uid, list({id(o): o for o in changed}.values()))
        if fills:
            self._emit("position", account.uid, sorted({f.symbol for f in fills}))
        if fills or any(p.qty for p in account.engine.account.positions.values()):
            self._emit("wallet", account.uid, None)

    # ----------------------------------------------------------------- accounts
    def account(self, uid: str) -> SimAccount:
        with self.lock:
            account = self.accounts.get(uid)
            if account is None:
                engine = MatchingEngine(self.instruments.values(), self.cash, self.config, uuid_ids)
                bar = self.step_bar(self.index, funding_due=False)
                engine.process_step(now_ms(), [bar])  # marks only: the account sees the last close
                account = self.accounts[uid] = SimAccount(uid, engine, self.instance_id)
            return account

    def create_order(self, uid: str, params: dict[str, object]) -> OrderMeta:
        check_category(params)
        symbol = str(params.get("symbol") or "")
        if symbol not in self.instruments:
            raise BybitError(PARAMS, "params error: symbol invalid")
        try:
            side = Side(str(params.get("side")))
            otype = OrderType(str(params.get("orderType")))
        except ValueError as exc:
            raise BybitError(PARAMS, "params error: side or orderType invalid") from exc
        qty = _decimal(params, "qty")
        assert qty is not None
        price = _decimal(params, "price", required=otype is OrderType.LIMIT)
        tif_raw = str(params.get("timeInForce") or ("IOC" if otype is OrderType.MARKET else "GTC"))
        try:
            tif = TimeInForce(tif_raw)
        except ValueError as exc:
            raise BybitError(PARAMS, "params error: timeInForce invalid") from exc
        if otype is OrderType.MARKET and tif is not TimeInForce.POST_ONLY:
            tif = TimeInForce.IOC
        for unsupported in ("triggerPrice", "takeProfit", "stopLoss"):
            if params.get(unsupported) not in (None, "", "0"):
                raise BybitError(PARAMS, f"params error: {unsupported} is not supported by the simulator")
        if str(params.get("positionIdx", "0")) not in ("0", ""):
            raise BybitError(PARAMS, "params error: position idx not match position mode")
        link_id = str(params.get("orderLinkId") or "")
        if len(link_id) > 36:
            raise BybitError(PARAMS, "params error: orderLinkId is too long")
        with self.lock:
            account = self.account(uid)
            if link_id and link_id in account.link_ids:
                raise rejection("duplicate_order_link_id")
            order_id = str(uuid.uuid4())
            trade_id = link_id or order_id
            while trade_id in account.engine.orders:  # a link id that shadows an engine order
                trade_id = f"{trade_id}#"
            order = Order(
                trade_id=trade_id,
                symbol=symbol,
                side=side,
                qty=qty,
                type=otype,
                price=price,
                tif=tif,
                reduce_only=_flag(params.get("reduceOnly", False)),
            )
            ts = now_ms()
            account.engine.submit(order, ts)
            if order.status is OrderStatus.REJECTED and order.reject_reason != POST_ONLY_TAKE:
                account.engine.orders.pop(trade_id, None)  # Bybit keeps no trace of a refused order
                raise rejection(order.reject_reason, order.reject_detail)
            meta = account.meta[trade_id] = OrderMeta(order_id, link_id)
            account.by_order_id[order_id] = trade_id
            if link_id:
                account.link_ids.add(link_id)
            self._arrive(account, order, ts)
            return meta

    def _arrive(self, account: SimAccount, order: Order, ts: int) -> None:
        """Match a new or amended order against the price now and tell the streams."""
        fills = account.engine.match_on_arrival(order, ts, self.live_bar())
        if fills:
            self._after_fills(account, fills, {})
        else:
            self._emit("order", account.uid, [order])

    def _target(self, account: SimAccount, params: dict[str, object]) -> Order:
        order_id = str(params.get("orderId") or "") or None
        link_id = str(params.get("orderLinkId") or "") or None
        if order_id is None and link_id is None:
            raise BybitError(PARAMS, "params error: orderId or orderLinkId is required")
        order = account.find(order_id, link_id)
        if order is None or not order.status.is_open:
            raise BybitError(ORDER_NOT_FOUND, "Order does not exist")
        if params.get("symbol") and params["symbol"] != order.symbol:
            raise BybitError(ORDER_NOT_FOUND, "Order does not exist")
        return order

    def cancel_order(self, uid: str, params: dict[str, object]) -> OrderMeta:
        check_category(params)
        with self.lock:
            account = self.account(uid)
            order = self._target(account, params)
            account.engine.cancel(order.trade_id, now_ms())
            self._emit("order", uid, [order])
            return account.meta_of(order.trade_id)

    def cancel_all(self, uid: str, params: dict[str, object]) -> list[OrderMeta]:
        check_category(params)
        symbol = str(params.get("symbol") or "") or None
        if symbol is not None and symbol not in self.instruments:
            raise BybitError(PARAMS, "params error: symbol invalid")
        if symbol is None and not params.get("settleCoin") and not params.get("baseCoin"):
            raise BybitError(PARAMS, "params error: symbol or settleCoin is required")
        with self.lock:
            account = self.account(uid)
            cancelled = account.engine.cancel_all(now_ms(), symbol)
            if cancelled:
                self._emit("order", uid, cancelled)
            return [account.meta_of(o.trade_id) for o in cancelled]

    def amend_order(self, uid: str, params: dict[str, object]) -> OrderMeta:
        check_category(params)
        for unsupported in ("triggerPrice", "takeProfit", "stopLoss"):
            if params.get(unsupported) not in (None, ""):
                raise BybitError(PARAMS, f"params error: {unsupported} is not supported by the simulator")
        with self.lock:
            account = self.account(uid)
            order = self._target(account, params)
            inst = self.instruments[order.symbol]
            qty = _decimal(params, "qty", required=False)
            price = _decimal(params, "price", required=False)
            new_qty = inst.round_qty(qty) if qty is not None else order.qty
            new_price = order.price
            if price is not None:
                if order.type is OrderType.MARKET:
                    raise BybitError(PARAMS, "params error: cannot amend the price of a Market order")
                new_price = inst.round_price(price)
            if new_qty == order.qty and new_price == order.price:
                raise BybitError(NOT_MODIFIED, "not modified")
            if new_qty <= order.filled_qty:
                raise BybitError(PARAMS, "params error: qty must exceed the executed qty")
            inst_price = new_price if new_price is not None else account.engine.mark(order.symbol)
            try:
                inst.check_order(new_qty, inst_price, order.reduce_only)
            except OrderRejected as exc:
                raise rejection(exc.reason) from exc
            order.qty, order.price = new_qty, new_price
            order.updated_ts = ts = now_ms()
            self._arrive(account, order, ts)  # an amended price that crosses takes, as on Bybit
            return account.meta_of(order.trade_id)

    def open_orders(self, uid: str) -> list[Order]:
        with self.lock:
            return self._open(self.account(uid))
