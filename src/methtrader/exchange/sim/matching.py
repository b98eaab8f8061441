"""The matching engine: a deterministic, bar-driven exchange for linear perpetuals.

It owns the exchange-side account (orders, positions, margin, funding, liquidation). Nothing here
does I/O or reads a clock: the caller passes every bar and timestamp, so a replay is exact.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from methtrader.exchange.sim.ids import ExecIds, sequential_ids
from methtrader.exchange.sim.margin import (
    adverse_price,
    clear_of_trigger,
    liquidation_candidate,
    liquidation_price,
    liquidation_trigger,
)
from methtrader.exchange.sim.slippage import FixedSlippage, SlippageModel
from methtrader.model import (
    Account,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from methtrader.model.bar import HOUR_MS
from methtrader.model.instrument import to_decimal

ZERO = Decimal(0)
_IMMEDIATE = (TimeInForce.IOC, TimeInForce.FOK)


@dataclass(frozen=True)
class SimConfig:
    """Venue settings; fees left as None come from each instrument's maker/taker rates."""

    leverage: Decimal = Decimal(1)
    fee_maker: Decimal | None = None
    fee_taker: Decimal | None = None
    slippage: SlippageModel = field(default_factory=FixedSlippage)
    max_volume_share: float | None = None
    funding_rate: Decimal = Decimal("0.0001")
    funding_interval_ms: int = 8 * HOUR_MS


@dataclass(slots=True)
class StepBar:
    """One symbol's bar within a timeline step, as plain floats (the hot path avoids objects)."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    funding_count: int = 0


@dataclass(frozen=True, slots=True)
class FundingPayment:
    ts: int
    symbol: str
    position: Decimal
    mark: Decimal
    rate: Decimal
    amount: Decimal


class MatchingEngine:
    """Accepts orders between bars and executes them against the next bars of their symbol.

    Market orders fill at the next bar's open plus slippage (taker, immediate-or-cancel as on
    Bybit); limit orders fill at their price when a bar trades through it, or at the open when
    the bar opens beyond it. Fills are capped by a share of the bar's volume when configured.
    A venue that shows the next bar's open as its current price can execute an order at once
    instead (`match_on_arrival`): same prices, same rules, no wait for the bar.

    `exec_ids` names the executions: E1, E2, ... by default, so a backtest is reproducible; a
    venue whose fills outlive the process passes globally unique ids (`ids.uuid_ids`).
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        cash: Decimal,
        config: SimConfig | None = None,
        exec_ids: ExecIds | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.instruments = {i.symbol: i for i in instruments}
        self.leverage = self.config.leverage
        for inst in self.instruments.values():
            if self.leverage > inst.max_leverage or self.leverage <= 0:
                raise ValueError(
                    f"leverage {self.leverage} outside (0, {inst.max_leverage}] for {inst.symbol}"
                )
        self.account = Account(wallet_balance=cash, leverage=self.leverage)
        self.orders: dict[str, Order] = {}
        self.open_orders: dict[str, list[Order]] = {s: [] for s in self.instruments}
        self.marks: dict[str, float] = {}
        self._mark_decimals: dict[str, Decimal] = {}
        self.fills: list[Fill] = []
        self.funding: list[FundingPayment] = []
        self.liquidations = 0
        self._maker = {
            s: self.config.fee_maker if self.config.fee_maker is not None else i.maker_fee
            for s, i in self.instruments.items()
        }
        self._taker = {
            s: self.config.fee_taker if self.config.fee_taker is not None else i.taker_fee
            for s, i in self.instruments.items()
        }
        self._exec_ids = exec_ids or sequential_ids()
        self._volume_spent: dict[str, Decimal] = {}  # by orders matched on arrival, per symbol
        self._turns: dict[str, set[str]] = {}  # trade ids `match_path` already matched in the bar
        self._mmr = {s: float(i.maintenance_margin_rate) for s, i in self.instruments.items()}
        self._held_cache: tuple[list[str], list[tuple[float, float, float]], float] | None = None
        self._trigger: float | None = None

    # ----------------------------------------------------------------- orders
    def has_open_orders(self) -> bool:
        return any(self.open_orders.values())

    def position_qty(self, symbol: str) -> Decimal:
        pos = self.account.positions.get(symbol)
        return pos.qty if pos is not None else ZERO

    def mark(self, symbol: str) -> Decimal:
        """The last close as a Decimal (converted once per bar)."""
        mark = self._mark_decimals.get(symbol)
        if mark is None:
            if symbol not in self.marks:
                raise OrderRejected("no_market_data", f"no price yet for {symbol}")
            mark = self._mark_decimals[symbol] = to_decimal(self.marks[symbol])
        return mark

    def submit(self, order: Order, ts: int) -> Order:
        """Validate and accept an order (status New) or mark it Rejected with a reason code."""
        existing = self.orders.get(order.trade_id)
        if existing is order:  # an idempotent retry of the very same order: nothing to do
            return order
        order.created_ts = order.updated_ts = ts
        if existing is not None:
            order.status = OrderStatus.REJECTED
            order.reject_reason = "duplicate_order_link_id"
            return order
        self.orders[order.trade_id] = order
        try:
            self._validate(order)
        except OrderRejected as exc:
            order.reject(exc.reason, ts)
            order.reject_detail = exc.detail
            return order
        self.open_orders[order.symbol].append(order)
        return order

    def _validate(self, order: Order) -> None:
        inst = self.instruments.get(order.symbol)
        if inst is None:
            raise OrderRejected("unknown_symbol", order.symbol)
        mark = self.mark(order.symbol)
        order.qty = inst.round_qty(order.qty)
        if order.type is OrderType.LIMIT:
            if order.price is None:
                raise OrderRejected("limit_without_price")
            order.price = inst.round_price(order.price)
            ref = order.price
            marketable = order.price >= mark if order.side is Side.BUY else order.price <= mark
            order.taker_on_arrival = marketable
            if order.tif is TimeInForce.POST_ONLY and marketable:
                raise OrderRejected("post_only_would_take", f"{order.side} {order.price} vs {mark}")
        else:
            if order.tif is TimeInForce.POST_ONLY:
                raise OrderRejected("post_only_market_order")
            order.price = None
            ref = mark
        position = self.position_qty(order.symbol)
        if order.reduce_only:
            if position == 0 or (position > 0) == (order.side is Side.BUY):
                raise OrderRejected("reduce_only_would_increase", f"position {position}")
            order.qty = min(order.qty, abs(position))
        inst.check_order(order.qty, ref, order.reduce_only)
        if not order.reduce_only:
            self._check_margin(order, ref)

    def _check_margin(self, order: Order, price: Decimal) -> None:
        """Bybit's rule: the opening part of the order needs initial margin plus the taker fee."""
        working = self.open_orders[order.symbol]
        pending = sum((o.signed_leaves for o in working if not o.reduce_only), ZERO) if working else ZERO
        current = self.position_qty(order.symbol) + pending
        signed = order.qty if order.side is Side.BUY else -order.qty
        opening = abs(current + signed) - abs(current)
        if opening <= 0:
            return
        need = opening * price / self.leverage + order.qty * price * self._taker[order.symbol]
        available = self.available_balance()
        if need > available:
            raise OrderRejected("insufficient_available_balance", f"need {need}, have {available}")

    def available_balance(self) -> Decimal:
        marks = {s: self.mark(s) for s, p in self.account.positions.items() if p.qty}
        order_margin = ZERO
        for symbol, orders in self.open_orders.items():
            for o in orders:
                if not o.reduce_only:
                    price = o.price if o.price is not None else self.mark(symbol)
                    order_margin += o.leaves_qty * price / self.leverage
        return self.account.available_balance(marks, order_margin)

    def cancel(self, trade_id: str, ts: int) -> Order | None:
        """Cancel an open order; None when it is unknown or no longer open (as Bybit's 110001)."""
        order = self.orders.get(trade_id)
        if order is None or not order.status.is_open:
            return None
        self.open_orders[order.symbol].remove(order)
        order.transition(OrderStatus.CANCELLED, ts)
        return order

    def cancel_all(self, ts: int, symbol: str | None = None) -> list[Order]:
        symbols = [symbol] if symbol else list(self.open_orders)
        cancelled = []
        for s in symbols:
            for order in list(self.open_orders[s]):
                self.cancel(order.trade_id, ts)
                cancelled.append(order)
        return cancelled

    # ----------------------------------------------------------------- bars
    def process_step(self, ts: int, bars: list[StepBar]) -> list[Fill]:
        """Advance the venue by one timeline step: funding at the open, matching, marks, then the
        account-wide liquidation check at each position's worst price of the step."""
        fills: list[Fill] = []
        for bar in bars:
            if bar.funding_count and self.config.funding_rate:
                self._pay_funding(ts, bar)
            book = self.open_orders[bar.symbol]
            if self._turns:
                done = self._turns.pop(bar.symbol, ())
                book = [o for o in book if o.trade_id not in done]
            if book:
                fills.extend(self._match(ts, bar, book[:]))
            if self._volume_spent:
                self._volume_spent.pop(bar.symbol, None)
            self.marks[bar.symbol] = bar.close
            self._mark_decimals.pop(bar.symbol, None)
        if self.account.positions and self._breached(bars):
            fills.extend(self._liquidate(ts, bars))
        return fills

    def match_on_arrival(self, order: Order, ts: int, bar: StepBar) -> list[Fill]:
        """Execute a just-accepted (or amended) order at once against `bar`, the bar now trading,
        whose open is the venue's current price: a market order fills at it (slippage, tick and
        range rules as in `process_step`), a limit that crosses it fills there as taker, IOC/FOK
        leftovers are cancelled, and the rest of a limit rests for `process_step` of that same
        bar. PostOnly orders never take, so they only rest. Volume taken here counts against the
        bar's cap."""
        if order.trade_id in self._turns.get(order.symbol, ()):
            self._turns[order.symbol].discard(order.trade_id)  # amended: a new order's turn
        if not order.status.is_open or order.tif is TimeInForce.POST_ONLY:
            return []
        return self._match(ts, bar, [order], arrival=True)

    def match_path(self, ts: int, bar: StepBar, traded: StepBar) -> list[Fill]:
        """Fill now the resting orders of `bar` that the part of it traded so far (`traded`: its
        open, the low and high reached) has reached, with what `process_step` of `bar` gives them.

        `process_step` matches in book order, and what a reduce-only order or the volume cap leave
        an order depends on the fills before it; so orders get their turn here in book order, up to
        the first that the bar fills but the path has not reached yet. Those that the bar does not
        fill take their turn too (a reduce-only one is cancelled if nothing is left to reduce at
        its turn, as in `process_step`), and `process_step` of `bar` skips every order that had it.
        Hence the fills here plus those of `process_step` afterwards are exactly the fills of
        `process_step` alone (but for their timestamps) when no order arrives in between. Volume
        taken here counts against the bar's cap."""
        inst = self.instruments[bar.symbol]
        done = self._turns.setdefault(bar.symbol, set())
        turn = []
        for order in self.open_orders[bar.symbol]:
            if order.trade_id in done:
                continue
            reached = self._execution_price(order, traded, inst)[0] is not None
            if not reached and self._execution_price(order, bar, inst)[0] is not None:
                break
            turn.append(order)
        done.update(o.trade_id for o in turn)
        return self._match(ts, bar, turn, keep_spent=True) if turn else []

    def pay_funding(self, ts: int, bars: list[StepBar]) -> None:
        """Funding due at the open of `bars`, for a venue that opens a bar (and trades at its
        open) before it matches the bar; it then passes the bars to `process_step` with
        funding_count 0."""
        for bar in bars:
            if bar.funding_count and self.config.funding_rate:
                self._pay_funding(ts, bar)

    def _pay_funding(self, ts: int, bar: StepBar) -> None:
        pos = self.account.positions.get(bar.symbol)
        if pos is None or not pos.qty:
            return
        mark = self.instruments[bar.symbol].round_price(bar.open)
        rate = self.config.funding_rate * bar.funding_count
        amount = pos.qty * mark * rate
        self.account.book_funding(amount)
        self._held_cache = self._trigger = None
        self.funding.append(FundingPayment(ts, bar.symbol, pos.qty, mark, rate, amount))

    def _match(
        self, ts: int, bar: StepBar, orders: list[Order], arrival: bool = False, keep_spent: bool = False
    ) -> list[Fill]:
        fills = []
        inst = self.instruments[bar.symbol]
        share = self.config.max_volume_share
        spent = self._volume_spent.get(bar.symbol, ZERO)
        budget = None if share is None else max(ZERO, to_decimal(bar.volume) * to_decimal(share) - spent)
        volume_left = budget
        book = self.open_orders[bar.symbol]
        for order in orders:
            price, liquidity = self._execution_price(order, bar, inst, arrival)
            order.taker_on_arrival = False  # from now on it rests in the book
            if price is not None:
                qty = order.leaves_qty
                if volume_left is not None and volume_left < qty:
                    qty = inst.round_qty(volume_left)
                if order.reduce_only:
                    qty = self._reduce_only_qty(order, qty)
                if order.tif is TimeInForce.FOK and qty < order.leaves_qty:
                    qty = ZERO
                if qty > 0:
                    if volume_left is not None:
                        volume_left -= qty
                    fills.append(self._fill(order, qty, price, liquidity, ts))
            if order.status is OrderStatus.FILLED:
                book.remove(order)
                continue
            immediate = order.type is OrderType.MARKET or order.tif in _IMMEDIATE
            if immediate or (order.reduce_only and self._reduce_only_qty(order, order.leaves_qty) == 0):
                self._close_order(order, ts)
        if (arrival or keep_spent) and budget is not None and volume_left is not None:
            self._volume_spent[bar.symbol] = spent + budget - volume_left
        return fills

    def _reduce_only_qty(self, order: Order, qty: Decimal) -> Decimal:
        position = self.position_qty(order.symbol)
        if position == 0 or (position > 0) == (order.side is Side.BUY):
            return ZERO
        return min(qty, abs(position))

    def _close_order(self, order: Order, ts: int) -> None:
        self.open_orders[order.symbol].remove(order)
        order.transition(OrderStatus.CANCELLED, ts)

    def _execution_price(
        self, order: Order, bar: StepBar, inst: Instrument, arrival: bool = False
    ) -> tuple[Decimal | None, Liquidity]:
        """Price and side of the book of a fill of `order` in `bar`, or None: no fill. On arrival
        only the open counts (the price now); the rest of the bar has not traded yet."""
        buy = order.side is Side.BUY
        if order.type is OrderType.MARKET:
            raw = self.config.slippage.price(order.side, to_decimal(bar.open), order.leaves_qty, bar.volume)
            return _on_grid(inst, raw, bar, up=buy), Liquidity.TAKER
        limit = order.price
        assert limit is not None
        opens_through = bar.open <= limit if buy else bar.open >= limit
        if opens_through:
            taker = arrival or order.taker_on_arrival
            price = _on_grid(inst, to_decimal(bar.open), bar, up=buy)
            return price, Liquidity.TAKER if taker else Liquidity.MAKER
        if arrival or order.tif in _IMMEDIATE:
            return None, Liquidity.TAKER
        trades_through = bar.low < limit if buy else bar.high > limit
        return (limit, Liquidity.MAKER) if trades_through else (None, Liquidity.MAKER)

    def _fill(
        self,
        order: Order,
        qty: Decimal,
        price: Decimal,
        liquidity: Liquidity,
        ts: int,
        is_liquidation: bool = False,
    ) -> Fill:
        fee_rate = self._taker[order.symbol] if liquidity is Liquidity.TAKER else self._maker[order.symbol]
        fee = qty * price * fee_rate
        signed = qty if order.side is Side.BUY else -qty
        pnl = self.account.book_fill(order.symbol, signed, price, fee)
        self._held_cache = self._trigger = None
        order.record_fill(qty, price, fee, ts)
        fill = Fill(
            exec_id=self._exec_ids(),
            trade_id=order.trade_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            liquidity=liquidity,
            ts=ts,
            realised_pnl=pnl,
            position_after=self.account.positions[order.symbol].qty,
            is_liquidation=is_liquidation,
        )
        self.fills.append(fill)
        return fill

    # ----------------------------------------------------------------- liquidation
    def held(self) -> tuple[list[str], list[tuple[float, float, float]]]:
        """Symbols with a position and their float (qty, cost, mmr), cached between fills."""
        if self._held_cache is None:
            positions = self.account.positions
            symbols = sorted(s for s, p in positions.items() if p.qty)
            held = [(float(positions[s].qty), float(positions[s].cost), self._mmr[s]) for s in symbols]
            self._held_cache = (symbols, held, float(self.account.wallet_balance))
        return self._held_cache[0], self._held_cache[1]

    @property
    def wallet_float(self) -> float:
        self.held()
        assert self._held_cache is not None
        return self._held_cache[2]

    def _adverse(
        self, symbols: list[str], held: list[tuple[float, float, float]], bars: dict[str, StepBar]
    ) -> list[float]:
        return [
            adverse_price(q, bars[s].low, bars[s].high) if s in bars else self.marks[s]
            for s, (q, _, _) in zip(symbols, held, strict=True)
        ]

    @property
    def single_trigger(self) -> float | None:
        """Liquidation trigger price when exactly one position is open (cached between fills)."""
        symbols, held = self.held()
        if len(symbols) != 1:
            return None
        if self._trigger is None:
            qty, cost, mmr = held[0]
            self._trigger = liquidation_trigger(self.wallet_float, qty, cost, mmr)
        return self._trigger

    def _breached(self, bars: list[StepBar]) -> bool:
        symbols, held = self._held_cache[:2] if self._held_cache is not None else self.held()
        if not symbols:
            return False
        if len(symbols) == 1:
            trigger = self._trigger if self._trigger is not None else self.single_trigger
            qty = held[0][0]
            for bar in bars:
                if bar.symbol == symbols[0]:
                    if clear_of_trigger(qty, trigger, bar.low if qty > 0 else bar.high):  # type: ignore[arg-type]
                        return False
                    break
        adverse = self._adverse(symbols, held, {b.symbol: b for b in bars})
        if not liquidation_candidate(self.wallet_float, held, adverse):
            return False
        equity, maintenance = self._exact_margin(symbols, [to_decimal(p) for p in adverse])
        return equity < maintenance

    def _exact_margin(self, symbols: list[str], prices: list[Decimal]) -> tuple[Decimal, Decimal]:
        """Equity and maintenance margin in Decimal at the given prices: the final word near the
        boundary, where the float screen cannot decide."""
        equity = self.account.wallet_balance
        maintenance = ZERO
        for symbol, price in zip(symbols, prices, strict=True):
            pos = self.account.positions[symbol]
            equity += pos.qty * price - pos.cost
            maintenance += abs(pos.qty) * price * self.instruments[symbol].maintenance_margin_rate
        return equity, maintenance

    def scan_liquidation(self, low: dict[str, np.ndarray], high: dict[str, np.ndarray]) -> int | None:
        """First row of the given future bars at which the current positions would be liquidated,
        if nothing else happened before; rows are timeline steps, columns come per symbol."""
        symbols, held = self.held()
        if not symbols:
            return None
        adverse = [adverse_price(q, low[s], high[s]) for s, (q, _, _) in zip(symbols, held, strict=True)]
        hits = np.flatnonzero(liquidation_candidate(self.wallet_float, held, adverse))
        return int(hits[0]) if len(hits) else None

    def _liquidate(self, ts: int, bars: list[StepBar]) -> list[Fill]:
        """Close every position at the price where equity meets maintenance margin, or at the
        open when the bar gapped beyond it; open orders are cancelled first."""
        self.liquidations += 1
        self.cancel_all(ts)
        by_symbol = {b.symbol: b for b in bars}
        symbols, held = self.held()
        adverse = [to_decimal(p) for p in self._adverse(symbols, held, by_symbol)]
        exact_held = [
            (p.qty, p.cost, self.instruments[s].maintenance_margin_rate)
            for s, p in ((s, self.account.positions[s]) for s in symbols)
        ]
        wallet = self.account.wallet_balance
        triggers = [liquidation_price(wallet, exact_held, adverse, k) for k in range(len(symbols))]
        fills = []
        for symbol, trigger in zip(symbols, triggers, strict=True):
            inst = self.instruments[symbol]
            pos_qty = self.account.positions[symbol].qty
            bar = by_symbol.get(symbol)
            if bar is not None:
                long = pos_qty > 0
                opened = to_decimal(bar.open)
                trigger = min(trigger, opened) if long else max(trigger, opened)
                price = _on_grid(inst, trigger, bar, up=not long)
            else:
                price = inst.round_price(self.marks[symbol])
            trade_id = f"liq-{self.liquidations}-{symbol}"
            while trade_id in self.orders:  # never shadow an order someone else named so
                trade_id += "-x"
            order = Order(
                trade_id=trade_id,
                symbol=symbol,
                side=Side.SELL if pos_qty > 0 else Side.BUY,
                qty=abs(pos_qty),
                reduce_only=True,
                created_ts=ts,
                updated_ts=ts,
            )
            self.orders[order.trade_id] = order
            fills.append(self._fill(order, abs(pos_qty), price, Liquidity.TAKER, ts, True))
        return fills


def _on_grid(inst: Instrument, price: Decimal, bar: StepBar, up: bool) -> Decimal:
    """Round to the tick (up for buys, down for sells: never in the trader's favour), then keep
    the result inside the bar's range so no fill prints a price the bar never traded."""
    tick = inst.tick_size
    rounded = (price / tick).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) * tick
    # Grid prices differ by a tick, far more than float rounding: comparing as floats is exact here
    if bar.low <= float(rounded) <= bar.high:
        return rounded
    high = (to_decimal(bar.high) / tick).to_integral_value(ROUND_FLOOR) * tick
    low = (to_decimal(bar.low) / tick).to_integral_value(ROUND_CEILING) * tick
    if low > high:  # the bar is narrower than a tick: the nearest tick is the best we can do
        return inst.round_price(price)
    return min(max(rounded, low), high)
