"""Property tests: random tick-grid bar paths and random order flow through the matching engine.

Every price is an integer number of ticks × 0.01, so each float price has an exact decimal repr
and the ledger (all Decimal) can be checked with exact equality, no tolerances.

Conservation (a), exact formulation. Let W be the wallet balance, C the initial cash, F the fees
paid, Φ the funding paid, M_s the current mark (last close) of symbol s, and for every fill i its
signed quantity q_i and price p_i. For a linear contract a fill of q_i at p_i is worth
q_i × (M − p_i) at mark M, whatever the cost-basis bookkeeping, hence at every step:

    W + Σ_s (qty_s × M_s − cost_s)  ==  C − F − Φ + Σ_i q_i × (M_{s(i)} − p_i)

(left: equity marked at the last closes; right: cash plus every fill's price PnL marked to the
same closes). It holds exactly, also across partial closes (the 1e-12 rounding of the removed
cost moves PnL between realised and unrealised but cancels in the sum) and across reversals and
liquidations. In particular with zero fees and zero funding, equity only changes by price moves
of what is held or traded. In addition the wallet itself satisfies

    W == C − F − Φ + Σ_i realised_pnl_i,   F == Σ_i fee_i,   Φ == Σ funding payments,

and each position's qty equals the sum of its fills' signed quantities.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from methtrader.exchange.sim.matching import MatchingEngine, SimConfig, StepBar
from methtrader.exchange.sim.path import IntrabarPath
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.model import Fill, Order, OrderStatus, OrderType, Side, TimeInForce
from methtrader.model.instrument import generic_perpetual

SYMBOLS = ("AAAUSDT", "BBBUSDT")
INSTRUMENTS = {s: generic_perpetual(s) for s in SYMBOLS}
TICK = D("0.01")
S = OrderStatus
ZERO = D(0)


def px(ticks: int) -> float:
    """A tick-grid price as a float whose repr is the exact 2-decimal value."""
    return ticks / 100


def dec(x: float) -> D:
    return D(repr(x))


# one symbol's bar: open, high, low, close in ticks, volume, funding count
Row = tuple[int, int, int, int, float, int]


def _bars(row: list[Row]) -> list[StepBar]:
    return [
        StepBar(s, px(o), px(h), px(lo), px(c), vol, funding)
        for s, (o, h, lo, c, vol, funding) in zip(SYMBOLS, row, strict=True)
    ]


# --------------------------------------------------------------------------- strategies
@dataclass(frozen=True)
class Submit:
    symbol: str
    side: Side
    market: bool
    qty_steps: int
    offset_ticks: int
    tif: TimeInForce
    reduce_only: bool
    reuse_id: bool


@dataclass(frozen=True)
class Cancel:
    pick: int


submits = st.builds(
    Submit,
    symbol=st.sampled_from(SYMBOLS),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    market=st.booleans(),
    qty_steps=st.one_of(
        st.integers(0, 60), st.integers(50, 10_000), st.integers(50, 10_000), st.integers(50, 10_000)
    ),
    offset_ticks=st.one_of(st.integers(-50, 50), st.integers(-1_500, 1_500)),
    tif=st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY]),
    reduce_only=st.integers(0, 3).map(lambda n: n == 0),
    reuse_id=st.integers(0, 19).map(lambda n: n == 0),
)
actions = st.lists(st.one_of(submits, submits, submits, st.builds(Cancel, st.integers(0, 1_000))), max_size=3)


@st.composite
def bar_paths(draw: st.DrawFn) -> list[list[Row]]:
    """Per step, per symbol: (open, high, low, close) in ticks, volume, funding count."""
    n_steps = draw(st.integers(1, 40))
    close = {s: draw(st.integers(2_000, 20_000)) for s in SYMBOLS}
    big = st.integers(-1_500, 1_500)
    small = st.integers(-40, 40)
    path = []
    for _ in range(n_steps):
        row = []
        for s in SYMBOLS:
            o = max(100, close[s] + draw(st.one_of(small, small, small, big)))
            c = max(100, o + draw(st.one_of(small, small, big)))
            h = max(o, c) + draw(st.integers(0, 300))
            lo = max(1, min(o, c) - draw(st.integers(0, 300)))
            volume = draw(st.one_of(st.integers(1, 300), st.integers(1, 50_000))) / 10
            funding = draw(st.sampled_from([0, 0, 0, 1, 2]))
            close[s] = c
            row.append((o, h, lo, c, volume, funding))
        path.append(row)
    return path


configs = st.builds(
    SimConfig,
    leverage=st.sampled_from([D(1), D(3), D(10), D(25)]),
    fee_maker=st.sampled_from([None, D(0), D("-0.0001")]),
    fee_taker=st.sampled_from([None, D(0), D("0.001")]),
    slippage=st.sampled_from([FixedSlippage(0.0), FixedSlippage(0.0005), FixedSlippage(0.01)]),
    max_volume_share=st.sampled_from([None, None, 0.05, 0.5]),
    funding_rate=st.sampled_from([D(0), D("0.0001"), D("-0.0003"), D("0.01")]),
)


# --------------------------------------------------------------------------- the harness
class Harness:
    """Feeds a scenario step by step and checks the invariants after each submission and step."""

    def __init__(self, config: SimConfig, cash: D) -> None:
        self.cash = cash
        self.eng = MatchingEngine(INSTRUMENTS.values(), cash, config)
        self.fills: list[Fill] = []
        self.running: dict[str, D] = defaultdict(D)  # position replayed from fills
        self.rejected_ids: set[str] = set()
        self.duplicates: list[Order] = []
        self.seq = 0
        self.reduce_only_fills = 0

    # ------------------------------------------------------------- input
    def act(self, action: Submit | Cancel, ts: int, now: list[Row] | None = None) -> None:
        """Submit or cancel; with `now` (the row of the bars trading now, as on the simulator's
        venue) an accepted order is also matched on arrival against its symbol's bar."""
        eng = self.eng
        if isinstance(action, Cancel):
            if eng.orders:
                ids = sorted(eng.orders)
                trade_id = ids[action.pick % len(ids)]
                was_open = eng.orders[trade_id].status.is_open
                res = eng.cancel(trade_id, ts)
                assert (res is not None) == was_open
                if res is not None:
                    assert res.status is S.CANCELLED
            return
        if action.reuse_id and eng.orders:
            trade_id = sorted(eng.orders)[self.seq % len(eng.orders)]
        else:
            self.seq += 1
            trade_id = f"o{self.seq}"
        ref = round(self.eng.marks.get(action.symbol, 100.0) * 100)
        order = Order(
            trade_id=trade_id,
            symbol=action.symbol,
            side=action.side,
            qty=D(action.qty_steps) * D("0.001"),
            type=OrderType.MARKET if action.market else OrderType.LIMIT,
            price=None if action.market else D(max(1, ref + action.offset_ticks)) * TICK,
            tif=action.tif,
            reduce_only=action.reduce_only,
        )
        duplicate = trade_id in eng.orders
        result = eng.submit(order, ts)
        assert result is order
        if duplicate:
            assert order.status is S.REJECTED
            assert order.reject_reason == "duplicate_order_link_id"
            self.duplicates.append(order)
        elif order.status is S.REJECTED:
            assert order.reject_reason
            self.rejected_ids.add(trade_id)
        else:
            assert order.status is S.NEW
            assert order.qty > 0
            assert order.qty % INSTRUMENTS[order.symbol].qty_step == 0
            if order.price is not None:
                assert order.price % TICK == 0
            if now is not None:
                bar = _bars(now)[SYMBOLS.index(order.symbol)]
                fills = eng.match_on_arrival(order, ts, bar)
                assert all(f.trade_id == trade_id and not f.is_liquidation for f in fills)
                self._record(ts, fills, {bar.symbol: bar})
                self.check_conservation()
        self.check_orders()

    def step(self, ts: int, row: list[Row]) -> None:
        eng = self.eng
        bars = _bars(row)
        by_symbol = {b.symbol: b for b in bars}
        liquidations_before = eng.liquidations
        fills = eng.process_step(ts, bars)
        liq_fills = [f for f in fills if f.is_liquidation]
        # liquidation fills come last, one per held symbol, and only with a liquidation
        assert fills[len(fills) - len(liq_fills) :] == liq_fills
        assert (eng.liquidations - liquidations_before) == (1 if liq_fills else 0)
        position_before_liq = self._record(ts, fills, by_symbol)

        if liq_fills:
            # everything flat, nothing left open, and the account really was in breach at the
            # step's adverse prices (exact decimal arithmetic) just before liquidating
            assert all(p.qty == 0 for p in eng.account.positions.values())
            assert not eng.has_open_orders()
            assert set(position_before_liq) == {
                s for s, q in self._replay_until(len(self.fills) - len(liq_fills)).items() if q
            }
            wallet = eng.account.wallet_balance - sum((f.realised_pnl - f.fee for f in liq_fills), ZERO)
            held = []
            for f in liq_fills:
                q = position_before_liq[f.symbol]
                cost = q * f.price - f.realised_pnl  # the full close realised q × p − cost
                held.append((f.symbol, q, cost))
            assert self._breach(wallet, held, by_symbol)
        else:
            # no liquidation: with positions held, equity at the adverse prices covers maintenance
            # (a flat account may carry a negative wallet after a gap liquidation: nothing to do)
            held = [(s, p.qty, p.cost) for s, p in eng.account.positions.items() if p.qty]
            if held:
                assert not self._breach(eng.account.wallet_balance, held, by_symbol)

        self.check_orders()
        self.check_conservation()

    def _record(self, ts: int, fills: list[Fill], by_symbol: dict[str, StepBar]) -> dict[str, D]:
        """Check each new fill against its bar and order and replay it into the positions; the
        positions just before liquidation fills, by symbol."""
        eng = self.eng
        assert eng.fills[len(self.fills) :] == fills
        position_before_liq: dict[str, D] = {}
        for f in fills:
            bar = by_symbol[f.symbol]
            # (c) within the bar of this step, on the tick grid, stamped with this step
            assert dec(bar.low) <= f.price <= dec(bar.high), (f, bar)
            assert f.price % TICK == 0
            assert f.ts == ts
            assert f.qty > 0
            # (d) never for a rejected order
            assert f.trade_id not in self.rejected_ids
            order = eng.orders[f.trade_id]
            assert order.symbol == f.symbol and order.side is f.side
            # (b) positions replayed from fills; reduce-only never increases |position|
            before = self.running[f.symbol]
            after = before + f.signed_qty
            assert f.position_after == after
            if order.reduce_only:
                self.reduce_only_fills += 1
                assert abs(after) <= abs(before), (f, before)
                assert after * before >= 0, (f, before)
            if f.is_liquidation:
                position_before_liq[f.symbol] = before
                assert after == 0
            self.running[f.symbol] = after
            self.fills.append(f)
        return position_before_liq

    # ------------------------------------------------------------- invariants
    def _replay_until(self, n: int) -> dict[str, D]:
        pos: dict[str, D] = defaultdict(D)
        for f in self.fills[:n]:
            pos[f.symbol] += f.signed_qty
        return pos

    @staticmethod
    def _breach(wallet: D, held: list[tuple[str, D, D]], bars: dict[str, StepBar]) -> bool:
        equity = wallet
        maintenance = ZERO
        for symbol, qty, cost in held:
            bar = bars[symbol]
            adverse = dec(bar.low) if qty > 0 else dec(bar.high)
            equity += qty * adverse - cost
            maintenance += abs(qty) * adverse * INSTRUMENTS[symbol].maintenance_margin_rate
        return equity < maintenance

    def check_orders(self) -> None:
        """(e) quantities and statuses agree, and agree with the fills."""
        eng = self.eng
        filled: dict[str, D] = defaultdict(D)
        fees: dict[str, D] = defaultdict(D)
        for f in eng.fills:
            filled[f.trade_id] += f.qty
            fees[f.trade_id] += f.fee
        for trade_id, order in eng.orders.items():
            assert order.trade_id == trade_id
            assert ZERO <= order.filled_qty <= order.qty
            assert order.filled_qty == filled.get(trade_id, ZERO)
            assert order.fees == fees.get(trade_id, ZERO)
            status = order.status
            if status is S.NEW:
                assert order.filled_qty == 0
            elif status is S.PARTIALLY_FILLED:
                assert 0 < order.filled_qty < order.qty
            elif status is S.FILLED:
                assert order.filled_qty == order.qty
            elif status is S.CANCELLED:
                assert order.filled_qty < order.qty
            else:
                assert status is S.REJECTED
                assert order.filled_qty == 0
                assert order.reject_reason
        for order in self.duplicates:
            assert order.status is S.REJECTED
            assert order.filled_qty == 0
        open_ids = {o.trade_id for orders in eng.open_orders.values() for o in orders}
        assert open_ids == {t for t, o in eng.orders.items() if o.status.is_open}
        assert sum(len(v) for v in eng.open_orders.values()) == len(open_ids)

    def check_conservation(self) -> None:
        """(a) see the module docstring."""
        eng = self.eng
        acc = eng.account
        fees = sum((f.fee for f in self.fills), ZERO)
        funding = sum((p.amount for p in eng.funding), ZERO)
        realised = sum((f.realised_pnl for f in self.fills), ZERO)
        assert acc.fees_paid == fees
        assert acc.funding_paid == funding
        assert acc.wallet_balance == self.cash - fees - funding + realised

        marks = {s: dec(m) for s, m in eng.marks.items()}
        for s in SYMBOLS:
            assert eng.position_qty(s) == self.running[s]
        equity = acc.wallet_balance + sum(
            (p.qty * marks[s] - p.cost for s, p in acc.positions.items() if p.qty), ZERO
        )
        marked_fills = sum((f.signed_qty * (marks[f.symbol] - f.price) for f in self.fills), ZERO)
        assert equity == self.cash - fees - funding + marked_fills
        if eng.marks.keys() >= {s for s, p in acc.positions.items() if p.qty}:
            assert acc.equity(marks) == equity


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    config=configs,
    cash=st.sampled_from([D(20), D(50), D("300.5"), D(10_000)]),
    path=bar_paths(),
    flow=st.data(),
    on_arrival=st.booleans(),
)
def test_random_order_flow_invariants(
    config: SimConfig, cash: D, path: list[list[Row]], flow: st.DataObject, on_arrival: bool
) -> None:
    """`on_arrival`: as on the simulator's venue, each order is also matched when it arrives
    against the bar about to be stepped (whose open is the price now)."""
    h = Harness(config, cash)
    for i, row in enumerate(path):
        for action in flow.draw(actions, label=f"actions before step {i}"):
            h.act(action, 2 * i, row if on_arrival else None)
        h.step(2 * i + 1, row)


def test_harness_sees_reduce_only_fills_and_liquidations() -> None:
    """A fixed scenario through the same harness, so the property checks demonstrably run on
    reduce-only fills and on a liquidation (guards against a vacuous property test)."""
    h = Harness(SimConfig(leverage=D(10)), D(50))
    flat = [(10_000, 10_000, 10_000, 10_000, 1_000.0, 0)] * 2
    h.step(1, flat)
    # long 3 A (margin 30 + fee 0.165) and short 1 B (margin 10 + fee 0.055) out of 50
    h.act(Submit("AAAUSDT", Side.BUY, True, 3_000, 0, TimeInForce.GTC, False, False), 2)
    h.act(Submit("BBBUSDT", Side.SELL, True, 1_000, 0, TimeInForce.GTC, False, False), 2)
    h.step(3, flat)
    assert (h.eng.position_qty("AAAUSDT"), h.eng.position_qty("BBBUSDT")) == (D(3), D(-1))
    h.act(Submit("AAAUSDT", Side.SELL, True, 1_000, 0, TimeInForce.GTC, True, False), 4)
    h.step(5, flat)
    assert h.reduce_only_fills == 1
    # wallet 50 − 0.275 fees = 49.725; A's low 70 and B's high 103:
    # equity 49.725 + 2 × (70 − 100) − (103 − 100) = −13.275 < maintenance → liquidated
    h.step(7, [(7_500, 7_600, 7_000, 7_200, 1_000.0, 0), (10_200, 10_300, 10_100, 10_200, 1_000.0, 1)])
    assert h.eng.liquidations == 1
    assert h.reduce_only_fills == 3  # the two liquidation closes are reduce-only too


def test_harness_sees_fills_on_arrival() -> None:
    """The arrival path of the property test does fill (guards against a vacuous property)."""
    h = Harness(SimConfig(max_volume_share=0.5), D(10_000))
    flat = [(10_000, 10_000, 10_000, 10_000, 1_000.0, 0)] * 2
    h.step(1, flat)
    now = [(10_100, 10_200, 9_900, 10_000, 1.0, 0)] * 2
    h.act(Submit("AAAUSDT", Side.BUY, True, 800, 0, TimeInForce.GTC, False, False), 2, now)
    h.act(Submit("BBBUSDT", Side.SELL, False, 400, -200, TimeInForce.GTC, False, False), 2, now)
    assert [(f.symbol, f.qty, f.price) for f in h.fills] == [
        ("AAAUSDT", D("0.5"), D("101")),  # the market order takes the cap of 0.5 at the open
        ("BBBUSDT", D("0.4"), D("101")),  # a sell limit at 98 crosses the open 101: taker at 101
    ]
    assert not h.eng.has_open_orders()  # the market order's rest was cancelled, as IOC
    h.step(3, now)
    assert len(h.fills) == 2


# --------------------------------------------------------------------------- the intrabar path
def _per_symbol(fills: list[Fill]) -> dict[str, list[tuple[object, ...]]]:
    """What a fill is, but for its execution id and timestamp, in fill order per symbol."""
    out: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for f in fills:
        what = (f.trade_id, f.side, f.qty, f.price, f.fee, f.liquidity, f.realised_pnl)
        out[f.symbol].append((*what, f.position_after, f.is_liquidation))
    return dict(out)


# books crowded with limits near the price, so that orders compete for the volume cap and for
# what reduce-only orders may reduce within one bar
crowded = st.lists(
    st.one_of(
        st.builds(
            Submit,
            symbol=st.sampled_from(SYMBOLS),
            side=st.sampled_from([Side.BUY, Side.SELL]),
            market=st.integers(0, 5).map(lambda n: n == 0),
            qty_steps=st.integers(1, 3_000),
            offset_ticks=st.integers(-400, 400),
            tif=st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.POST_ONLY]),
            reduce_only=st.integers(0, 2).map(lambda n: n == 0),
            reuse_id=st.just(False),
        ),
        submits,
        st.builds(Cancel, st.integers(0, 1_000)),
    ),
    max_size=6,
)


def walk_path(h: Harness, ts: int, row: list[Row], fractions: list[float]) -> int:
    """As the simulator's venue replays a bar: funding at its open, resting orders filled as the
    intrabar path reaches them at each of `fractions`, then the bar's step. Fills on the path."""
    bars = _bars(row)
    by_symbol = {b.symbol: b for b in bars}
    h.eng.pay_funding(ts, bars)
    along = 0
    for k, fraction in enumerate(fractions):
        for bar in bars:
            fills = h.eng.match_path(ts + k + 1, bar, IntrabarPath(bar).traded(fraction))
            along += len(fills)
            h._record(ts + k + 1, fills, by_symbol)
        h.check_orders()
        h.check_conservation()
    h.step(ts + len(fractions) + 1, [(*r[:5], 0) for r in row])
    return along


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    config=configs,
    cash=st.sampled_from([D(50), D("300.5"), D(10_000), D(100_000)]),
    path=bar_paths(),
    flow=st.data(),
    on_arrival=st.booleans(),
)
def test_filling_along_the_intrabar_path_fills_as_the_bar_step(
    config: SimConfig, cash: D, path: list[list[Row]], flow: st.DataObject, on_arrival: bool
) -> None:
    """Backtest/paper parity: the same random order flow, once matched by each bar's step alone
    (the backtest) and once along the bar's intrabar path first (the simulator's replay), gives
    the same fills (order, price, qty, fee, liquidity, PnL) on the same bars, and the same account."""
    bar_step, along_path = Harness(config, cash), Harness(config, cash)
    fraction = st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.4, 0.5, 0.6, 2 / 3, 0.75, 0.9, 1.0])
    for i, row in enumerate(path):
        for action in flow.draw(crowded, label=f"actions before step {i}"):
            bar_step.act(action, 100 * i, row if on_arrival else None)
            along_path.act(action, 100 * i, row if on_arrival else None)
        fractions = sorted(flow.draw(st.lists(fraction, max_size=5), label=f"path of step {i}"))
        bar_step.step(100 * i + 50, row)
        walk_path(along_path, 100 * i + 1, row, fractions)
        a, b = bar_step.eng, along_path.eng
        assert _per_symbol(b.fills) == _per_symbol(a.fills)
        assert {t: (o.status, o.filled_qty) for t, o in b.orders.items()} == {
            t: (o.status, o.filled_qty) for t, o in a.orders.items()
        }
        assert b.account.wallet_balance == a.account.wallet_balance
        assert [(p.symbol, p.position, p.amount) for p in b.funding] == [
            (p.symbol, p.position, p.amount) for p in a.funding
        ]
        assert b.liquidations == a.liquidations


def test_the_intrabar_path_fills_in_the_bar_steps_order() -> None:
    """Long 1: a reduce-only sell at 110 placed first, a sell at 105 second. The path reaches 105
    first, but the bar step fills the 110 first (book order) and then the 105, which opens a
    short; filling the 105 when first reached would leave the reduce-only nothing to reduce."""
    h = Harness(SimConfig(), D(10_000))
    flat = [(10_000, 10_000, 10_000, 10_000, 1_000.0, 0)] * 2
    h.step(1, flat)
    h.act(Submit("AAAUSDT", Side.BUY, True, 1_000, 0, TimeInForce.GTC, False, False), 2)
    h.step(3, flat)
    h.act(Submit("AAAUSDT", Side.SELL, False, 1_000, 1_000, TimeInForce.GTC, True, False), 4)
    h.act(Submit("AAAUSDT", Side.SELL, False, 1_000, 500, TimeInForce.GTC, False, False), 4)
    up = [(10_000, 11_200, 9_900, 11_100, 1_000.0, 0)] * 2  # path 100 → 99 → 112 → 111
    bars = _bars(up)
    eng = h.eng
    assert eng.match_path(5, bars[0], IntrabarPath(bars[0]).traded(0.5)) == []  # 105.5: waits for 110
    fills = eng.match_path(6, bars[0], IntrabarPath(bars[0]).traded(2 / 3))  # 112
    assert [(f.trade_id, f.price, f.position_after) for f in fills] == [
        ("o2", D(110), D(0)),
        ("o3", D(105), D(-1)),
    ]
    h._record(6, fills, {b.symbol: b for b in bars})
    assert walk_path(h, 7, up, [1.0]) == 0  # nothing left for the path, nor for the step
    assert len(h.fills) == 3


def _twins(config: SimConfig, setup: list[Submit], resting: list[Submit]) -> tuple[Harness, Harness]:
    """Two identical accounts: `setup` orders filled on a flat bar at 100, then `resting` placed."""
    twins = Harness(config, D(10_000)), Harness(config, D(10_000))
    flat = [(10_000, 10_000, 10_000, 10_000, 1_000.0, 0)] * 2
    for h in twins:
        h.step(1, flat)
        for action in setup:
            h.act(action, 2)
        h.step(3, flat)
        for action in resting:
            h.act(action, 4)
    return twins


def test_the_intrabar_path_shares_the_volume_cap_in_book_order() -> None:
    """Cap 1 (half of volume 2): a buy of 1 at 95 placed first, a buy of 1 at 99 second, a sell
    of 1 at 100.80 third. The path reaches 99 first, but the bar step gives the cap to the 95, so
    the path waits for it; the sell, reached last, finds the cap spent."""
    buy_95 = Submit("AAAUSDT", Side.BUY, False, 1_000, -500, TimeInForce.GTC, False, False)
    buy_99 = Submit("AAAUSDT", Side.BUY, False, 1_000, -100, TimeInForce.GTC, False, False)
    sell = Submit("AAAUSDT", Side.SELL, False, 1_000, 80, TimeInForce.GTC, False, False)
    bar_step, along_path = _twins(SimConfig(max_volume_share=0.5), [], [buy_95, buy_99, sell])
    down_first = [(10_000, 10_100, 9_400, 10_050, 2.0, 0)] * 2  # path 100 → 94 → 101 → 100.5
    bar = _bars(down_first)[0]
    assert along_path.eng.match_path(5, bar, IntrabarPath(bar).traded(0.1)) == []  # at 98.2
    assert walk_path(along_path, 6, down_first, [1 / 3, 1.0]) == 1  # at 94: the 95 takes the cap
    bar_step.step(6, down_first)
    assert [(f.trade_id, f.qty, f.price) for f in along_path.fills] == [("o1", D(1), D(95))]
    assert _per_symbol(along_path.fills) == _per_symbol(bar_step.fills)
    for trade_id in ("o2", "o3"):
        assert along_path.eng.orders[trade_id].status is bar_step.eng.orders[trade_id].status is S.NEW


def test_a_reduce_only_order_ahead_keeps_the_verdict_of_its_turn() -> None:
    """Short 1: a reduce-only buy at 90 (out of the bar's reach) placed first, a buy at 99 second.
    The bar step looks at the 90 while the short is still open and keeps it; the 99 then closes
    the short. Filled on the path first, the 99 must not make the step cancel the 90."""
    sell = Submit("AAAUSDT", Side.SELL, True, 1_000, 0, TimeInForce.GTC, False, False)
    buy_90 = Submit("AAAUSDT", Side.BUY, False, 1_000, -1_000, TimeInForce.GTC, True, False)
    buy_99 = Submit("AAAUSDT", Side.BUY, False, 1_000, -100, TimeInForce.GTC, False, False)
    bar_step, along_path = _twins(SimConfig(), [sell], [buy_90, buy_99])
    down_first = [(10_000, 10_100, 9_800, 10_050, 1_000.0, 0)] * 2
    assert walk_path(along_path, 5, down_first, [1 / 3]) == 1
    bar_step.step(6, down_first)
    assert _per_symbol(along_path.fills) == _per_symbol(bar_step.fills)
    assert along_path.eng.position_qty("AAAUSDT") == 0
    assert along_path.eng.orders["o2"].status is bar_step.eng.orders["o2"].status is S.NEW
