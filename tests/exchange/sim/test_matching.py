"""Hand-worked scenarios for the bar-driven matching engine.

Every scenario starts with one step at a flat bar (O=H=L=C=100) so the engine has a mark
(last close 100); orders are then submitted between steps and match against the next step's bar.
Expected prices, fees, PnL and balances are computed by hand in the comments.
"""

from decimal import Decimal as D

import pytest

from methtrader.exchange.sim.matching import MatchingEngine, SimConfig, StepBar
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.model import Instrument, Liquidity, Order, OrderStatus, OrderType, Side, TimeInForce
from methtrader.model.instrument import generic_perpetual

SYM = "TESTUSDT"
INST = generic_perpetual(SYM)  # tick 0.01, step 0.001, min notional 5, taker 0.00055, maker 0.0002
BUY, SELL = Side.BUY, Side.SELL
S = OrderStatus
ZERO_FEES = {"fee_taker": D(0), "fee_maker": D(0)}


def bar(o: float, h: float, lo: float, c: float, v: float = 1_000.0, funding: int = 0) -> StepBar:
    return StepBar(SYM, o, h, lo, c, v, funding)


def engine(cash: str = "1000", inst: Instrument = INST, **config: object) -> MatchingEngine:
    """An engine whose first step (flat bar at 100) has set the mark to 100."""
    eng = MatchingEngine([inst], D(cash), SimConfig(**config))  # type: ignore[arg-type]
    assert eng.process_step(0, [StepBar(inst.symbol, 100.0, 100.0, 100.0, 100.0, 1_000.0)]) == []
    return eng


def market(tid: str, side: Side, qty: str, reduce_only: bool = False) -> Order:
    return Order(trade_id=tid, symbol=SYM, side=side, qty=D(qty), reduce_only=reduce_only)


def limit(
    tid: str, side: Side, qty: str, price: str, tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False
) -> Order:
    return Order(
        trade_id=tid,
        symbol=SYM,
        side=side,
        qty=D(qty),
        type=OrderType.LIMIT,
        price=D(price),
        tif=tif,
        reduce_only=reduce_only,
    )


def open_long(eng: MatchingEngine, qty: str, at: float = 100.0) -> None:
    """Market buy `qty`, filled at the open `at` of the next step (slippage 0 by default)."""
    o = eng.submit(market("open", BUY, qty), 1)
    assert o.status is S.NEW, o.reject_reason
    fills = eng.process_step(2, [bar(at, at, at, at)])
    assert len(fills) == 1
    assert fills[0].price == D(repr(at))


# --------------------------------------------------------------------------- submission rules
def test_submit_without_market_data_is_rejected() -> None:
    eng = MatchingEngine([INST], D("1000"))
    o = eng.submit(market("a", BUY, "1"), 0)
    assert o.status is S.REJECTED
    assert o.reject_reason == "no_market_data"
    assert not eng.has_open_orders()


def test_duplicate_trade_id_is_rejected_and_original_untouched() -> None:
    eng = engine()
    first = eng.submit(limit("dup", BUY, "1", "90"), 1)
    second = eng.submit(limit("dup", SELL, "1", "110"), 2)
    assert first.status is S.NEW
    assert first.created_ts == 1
    assert second.status is S.REJECTED
    assert second.reject_reason == "duplicate_order_link_id"
    assert eng.orders["dup"] is first
    assert eng.open_orders[SYM] == [first]


def test_resubmitting_the_same_order_object_leaves_the_live_order_intact() -> None:
    """A retry that passes the same Order again is a duplicate trade_id: it must be refused
    without corrupting the order already working in the book."""
    eng = engine()
    live = eng.submit(limit("x", BUY, "1", "90"), 1)
    assert live.status is S.NEW
    eng.submit(live, 5)
    assert live.status is S.NEW
    assert live.created_ts == 1
    assert eng.open_orders[SYM] == [live]
    # the order still works normally: the next bar opens below 90 → filled at the open 89
    fills = eng.process_step(6, [bar(89, 89, 88, 88)])
    assert [(f.trade_id, f.price) for f in fills] == [("x", D("89"))]
    assert live.status is S.FILLED


def test_liquidation_order_ids_do_not_clobber_user_orders() -> None:
    eng = engine(cash="11", leverage=D("10"))
    user = eng.submit(market("liq-1-TESTUSDT", BUY, "1"), 1)
    eng.process_step(2, [bar(100, 100, 100, 100)])
    assert user.status is S.FILLED
    (liq,) = eng.process_step(3, [bar(99, 99.5, 85, 88)])
    assert liq.is_liquidation
    assert eng.orders["liq-1-TESTUSDT"] is user
    assert liq.trade_id != "liq-1-TESTUSDT"


@pytest.mark.parametrize(
    ("qty", "reason"),
    [
        ("0.0004", "qty_not_positive"),  # rounds down to 0.000
        ("0", "qty_not_positive"),
        ("0.049", "notional_below_minimum"),  # 0.049 × mark 100 = 4.9 < 5
    ],
)
def test_minimum_rejections(qty: str, reason: str) -> None:
    eng = engine()
    o = eng.submit(market("a", BUY, qty), 1)
    assert o.status is S.REJECTED
    assert o.reject_reason == reason
    assert eng.process_step(2, [bar(100, 101, 99, 100)]) == []


def test_minimum_notional_uses_limit_price_and_accepts_exact_minimum() -> None:
    eng = engine()
    # 0.05 × 99.99 = 4.9995 < 5
    assert eng.submit(limit("a", BUY, "0.05", "99.99"), 1).reject_reason == "notional_below_minimum"
    # 0.05 × 100 = 5 (market: reference is the mark 100)
    assert eng.submit(market("b", BUY, "0.05"), 1).status is S.NEW
    # qty is rounded down to the step at submission: 0.0519 → 0.051
    o = eng.submit(market("c", BUY, "0.0519"), 1)
    assert o.status is S.NEW
    assert o.qty == D("0.051")


def test_qty_below_minimum_on_custom_instrument() -> None:
    inst = Instrument(
        symbol=SYM,
        tick_size=D("0.01"),
        qty_step=D("0.001"),
        min_qty=D("0.01"),
        min_notional=D("5"),
        max_leverage=D("10"),
        maker_fee=D("0.0002"),
        taker_fee=D("0.00055"),
    )
    eng = engine(inst=inst)
    o = eng.submit(Order(trade_id="a", symbol=SYM, side=BUY, qty=D("0.009")), 1)
    assert o.status is S.REJECTED
    assert o.reject_reason == "qty_below_minimum"


def test_unknown_symbol_rejected() -> None:
    eng = engine()
    o = eng.submit(Order(trade_id="a", symbol="NOPEUSDT", side=BUY, qty=D("1")), 1)
    assert o.reject_reason == "unknown_symbol"


def test_limit_price_rounded_half_even_at_submission() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99.985"), 1)  # 9998.5 ticks → even 9998 → 99.98
    assert o.price == D("99.98")


def test_leverage_outside_instrument_range() -> None:
    with pytest.raises(ValueError):
        MatchingEngine([INST], D("1000"), SimConfig(leverage=D("51")))
    with pytest.raises(ValueError):
        MatchingEngine([INST], D("1000"), SimConfig(leverage=D("0")))


# --------------------------------------------------------------------------- market orders
def test_market_buy_fills_at_next_open_taker() -> None:
    eng = engine()
    o = eng.submit(market("a", BUY, "1"), 1)
    assert o.status is S.NEW
    assert o.price is None
    fills = eng.process_step(2, [bar(100.5, 102, 99, 101)])
    assert len(fills) == 1
    f = fills[0]
    assert (f.trade_id, f.side, f.qty, f.price) == ("a", BUY, D("1"), D("100.50"))
    assert f.liquidity is Liquidity.TAKER
    # fee = 1 × 100.50 × 0.00055 = 0.055275
    assert f.fee == D("0.055275")
    assert f.realised_pnl == 0
    assert f.position_after == D("1")
    assert f.ts == 2
    assert not f.is_liquidation
    assert o.status is S.FILLED
    assert o.avg_price == D("100.50")
    assert eng.account.wallet_balance == D("999.944725")  # 1000 − 0.055275
    assert not eng.has_open_orders()


@pytest.mark.parametrize(
    ("side", "open_", "fraction", "expected"),
    [
        # 100.01 × 1.001 = 100.11001 → up to tick → 100.12
        (BUY, 100.01, 0.001, "100.12"),
        # 100.01 × 0.999 = 99.90999 → down to tick → 99.90
        (SELL, 100.01, 0.001, "99.90"),
        # 100 × 1.0005 = 100.05 exactly on the grid
        (BUY, 100.0, 0.0005, "100.05"),
        # 82 × 1.01 = 82.82 exactly on the grid: rounding UP must not add a tick
        (BUY, 82.0, 0.01, "82.82"),
        # 82 × 0.99 = 81.18 exactly on the grid: rounding DOWN must not remove a tick
        (SELL, 82.0, 0.01, "81.18"),
        # 107 × 1.01 = 108.07 exactly
        (BUY, 107.0, 0.01, "108.07"),
    ],
)
def test_market_slippage_rounded_against_trader(
    side: Side, open_: float, fraction: float, expected: str
) -> None:
    eng = engine(slippage=FixedSlippage(fraction))
    eng.submit(market("a", side, "1"), 1)
    fills = eng.process_step(2, [bar(open_, open_ + 5, open_ - 5, open_)])
    assert [f.price for f in fills] == [D(expected)]


def test_market_slippage_clamped_to_bar_range() -> None:
    eng = engine(slippage=FixedSlippage(0.001))
    eng.submit(market("b", BUY, "1"), 1)
    eng.submit(market("s", SELL, "1"), 1)
    # buy: 100 × 1.001 = 100.10 > high 100.05 → 100.05; sell: 99.90 < low 99.95 → 99.95
    fills = eng.process_step(2, [bar(100, 100.05, 99.95, 100)])
    assert {f.trade_id: f.price for f in fills} == {"b": D("100.05"), "s": D("99.95")}


def test_realised_pnl_and_fees_round_trip() -> None:
    eng = engine()
    eng.submit(market("buy", BUY, "1"), 1)
    eng.process_step(2, [bar(100, 100, 100, 100)])  # buy 1 @ 100, fee 0.055
    eng.submit(market("sell", SELL, "1"), 3)
    (f,) = eng.process_step(4, [bar(110, 111, 109, 110)])
    # sell 1 @ 110: realised 1 × (110 − 100) = 10; fee 110 × 0.00055 = 0.0605
    assert f.realised_pnl == D("10")
    assert f.fee == D("0.0605")
    assert f.position_after == 0
    # wallet = 1000 − 0.055 + 10 − 0.0605 = 1009.8845
    assert eng.account.wallet_balance == D("1009.8845")
    assert eng.account.fees_paid == D("0.1155")
    assert eng.position_qty(SYM) == 0


def test_fee_overrides_from_config() -> None:
    eng = engine(fee_taker=D("0.001"), fee_maker=D("-0.0001"))
    eng.submit(market("t", BUY, "2"), 1)
    eng.submit(limit("m", SELL, "1", "101"), 1)  # 101 > last close 100: rests, maker
    fills = eng.process_step(2, [bar(100, 102, 99, 101)])
    by_id = {f.trade_id: f for f in fills}
    # taker: 2 × 100 × 0.001 = 0.2; maker rebate: 1 × 101 × −0.0001 = −0.0101
    assert by_id["t"].fee == D("0.2")
    assert by_id["m"].fee == D("-0.0101")
    assert by_id["m"].liquidity is Liquidity.MAKER
    # sell 1 @ 101 closes 1 of the long 2 @ 100: +1
    assert by_id["m"].realised_pnl == D("1")
    # 1000 − 0.2 + 0.0101 + 1 = 1000.8101
    assert eng.account.wallet_balance == D("1000.8101")


# --------------------------------------------------------------------------- limit orders
def test_marketable_limit_buy_fills_at_open_as_taker() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "101"), 1)  # 101 >= last close 100: marketable
    (f,) = eng.process_step(2, [bar(100.5, 102, 100, 101)])
    # open 100.50 <= 101 → fill at the open; fee 100.50 × 0.00055 = 0.055275
    assert f.price == D("100.50")
    assert f.liquidity is Liquidity.TAKER
    assert f.fee == D("0.055275")
    assert o.status is S.FILLED


def test_resting_limit_buy_gap_below_fills_at_open_as_maker() -> None:
    eng = engine()
    eng.submit(limit("a", BUY, "1", "99"), 1)  # 99 < 100: not marketable
    (f,) = eng.process_step(2, [bar(98.5, 99.5, 98, 99)])
    # open 98.50 <= 99 → fill at the open (better than the limit); maker fee 98.50 × 0.0002 = 0.0197
    assert f.price == D("98.50")
    assert f.liquidity is Liquidity.MAKER
    assert f.fee == D("0.0197")


def test_resting_limit_buy_fills_at_limit_when_low_trades_through() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99"), 1)
    # low == 99: touched, not traded through → no fill
    assert eng.process_step(2, [bar(100, 101, 99, 100)]) == []
    assert o.status is S.NEW
    # low 98.99 < 99 → fill at 99, maker fee 99 × 0.0002 = 0.0198
    (f,) = eng.process_step(3, [bar(100, 101, 98.99, 100)])
    assert f.price == D("99")
    assert f.liquidity is Liquidity.MAKER
    assert f.fee == D("0.0198")
    assert o.status is S.FILLED


def test_resting_limit_sell_mirrors() -> None:
    eng = engine()
    open_long(eng, "2")
    o = eng.submit(limit("a", SELL, "1", "101"), 3)  # 101 > 100: rests
    assert eng.process_step(4, [bar(100, 101, 99, 100)]) == []  # high == 101: no fill
    (f,) = eng.process_step(5, [bar(100, 101.01, 99, 100)])  # high 101.01 > 101
    assert f.price == D("101")
    assert f.liquidity is Liquidity.MAKER
    # pnl 1 × (101 − 100) = 1
    assert f.realised_pnl == D("1")
    assert o.status is S.FILLED
    o2 = eng.submit(limit("b", SELL, "1", "101"), 6)
    (f2,) = eng.process_step(7, [bar(102, 103, 101.5, 102)])  # opens above 101 → fill at open
    assert f2.price == D("102")
    assert f2.liquidity is Liquidity.MAKER
    assert o2.status is S.FILLED


def test_marketable_limit_sell_fills_at_open_as_taker() -> None:
    eng = engine()
    eng.submit(limit("a", SELL, "1", "99"), 1)  # 99 <= 100: marketable
    (f,) = eng.process_step(2, [bar(99.5, 100, 98, 99)])
    assert f.price == D("99.50")
    assert f.liquidity is Liquidity.TAKER
    assert f.fee == D("0.0547250")  # 99.50 × 0.00055


def test_gtc_limit_that_does_not_fill_stays_open_and_can_be_cancelled() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "90"), 1)
    assert eng.process_step(2, [bar(100, 101, 95, 100)]) == []
    assert o.status is S.NEW
    assert eng.cancel("a", 3) is o
    assert o.status is S.CANCELLED
    assert eng.cancel("a", 4) is None
    assert eng.process_step(5, [bar(85, 86, 80, 85)]) == []


def test_ioc_limit_cancelled_after_first_bar() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99", TimeInForce.IOC), 1)
    assert eng.process_step(2, [bar(100, 101, 99.5, 100)]) == []  # never reached 99
    assert o.status is S.CANCELLED
    assert o.filled_qty == 0
    assert eng.process_step(3, [bar(90, 91, 89, 90)]) == []  # would fill a live order


def test_ioc_limit_partial_fill_then_cancel() -> None:
    eng = engine(max_volume_share=0.1)
    o = eng.submit(limit("a", BUY, "2", "101", TimeInForce.IOC), 1)
    # cap = 0.1 × volume 5 = 0.5; opens through at 100
    (f,) = eng.process_step(2, [bar(100, 101, 99, 100, v=5.0)])
    assert (f.qty, f.price) == (D("0.5"), D("100"))
    assert o.status is S.CANCELLED
    assert o.filled_qty == D("0.5")
    assert eng.process_step(3, [bar(100, 101, 99, 100, v=5.0)]) == []


def test_fok_is_all_or_nothing() -> None:
    eng = engine(max_volume_share=0.1)
    none = eng.submit(limit("none", BUY, "2", "101", TimeInForce.FOK), 1)
    # cap 0.5 < 2 → fill nothing, cancel
    assert eng.process_step(2, [bar(100, 101, 99, 100, v=5.0)]) == []
    assert none.status is S.CANCELLED
    assert none.filled_qty == 0
    full = eng.submit(limit("full", BUY, "0.5", "101", TimeInForce.FOK), 3)
    (f,) = eng.process_step(4, [bar(100, 101, 99, 100, v=5.0)])  # cap 0.5 == qty
    assert f.qty == D("0.5")
    assert full.status is S.FILLED


def test_fok_not_marketable_at_open_cancelled() -> None:
    eng = engine()
    o = eng.submit(limit("a", SELL, "1", "101", TimeInForce.FOK), 1)
    assert eng.process_step(2, [bar(100, 100.5, 99, 100)]) == []
    assert o.status is S.CANCELLED


def test_post_only() -> None:
    eng = engine()
    # last close 100: a buy at 100 or a sell at 100 would take
    b = eng.submit(limit("b", BUY, "1", "100", TimeInForce.POST_ONLY), 1)
    s = eng.submit(limit("s", SELL, "1", "100", TimeInForce.POST_ONLY), 1)
    assert (b.status, b.reject_reason) == (S.REJECTED, "post_only_would_take")
    assert (s.status, s.reject_reason) == (S.REJECTED, "post_only_would_take")
    ok = eng.submit(limit("ok", BUY, "1", "99.99", TimeInForce.POST_ONLY), 1)
    assert ok.status is S.NEW
    (f,) = eng.process_step(2, [bar(100, 100.5, 99.9, 100)])
    assert (f.trade_id, f.price, f.liquidity) == ("ok", D("99.99"), Liquidity.MAKER)
    assert f.fee == D("0.019998")  # 99.99 × 0.0002


def test_post_only_market_order_rejected() -> None:
    eng = engine()
    o = Order(trade_id="a", symbol=SYM, side=BUY, qty=D("1"), tif=TimeInForce.POST_ONLY)
    assert eng.submit(o, 1).status is S.REJECTED


# --------------------------------------------------------------------------- volume cap
def test_market_partial_fill_by_volume_cap_cancels_rest() -> None:
    eng = engine(max_volume_share=0.1)
    o = eng.submit(market("a", BUY, "2"), 1)
    (f,) = eng.process_step(2, [bar(100, 101, 99, 100, v=5.0)])
    # 0.1 × 5 = 0.5 of 2
    assert f.qty == D("0.5")
    assert o.filled_qty == D("0.5")
    assert o.status is S.CANCELLED
    assert eng.position_qty(SYM) == D("0.5")
    assert not eng.has_open_orders()


def test_volume_cap_shared_by_orders_in_the_bar() -> None:
    eng = engine(max_volume_share=0.1)
    a = eng.submit(market("a", BUY, "0.3"), 1)
    b = eng.submit(market("b", BUY, "0.3"), 1)
    fills = eng.process_step(2, [bar(100, 101, 99, 100, v=5.0)])
    # cap 0.5: a takes 0.3, b the remaining 0.2
    assert [(f.trade_id, f.qty) for f in fills] == [("a", D("0.3")), ("b", D("0.2"))]
    assert a.status is S.FILLED
    assert b.status is S.CANCELLED


def test_volume_cap_rounds_down_to_step() -> None:
    eng = engine(max_volume_share=0.1)
    eng.submit(market("a", BUY, "1"), 1)
    (f,) = eng.process_step(2, [bar(100, 101, 99, 100, v=1.2345)])
    assert f.qty == D("0.123")  # 0.12345 → 0.123


def test_volume_cap_exact_product_not_lost_to_float_noise() -> None:
    eng = engine(max_volume_share=0.1)
    eng.submit(market("a", BUY, "1"), 1)
    # 0.1 × 2.3 = 0.23 exactly (as decimals) → fill 0.230; in binary floats 0.22999999999999998
    (f,) = eng.process_step(2, [bar(100, 101, 99, 100, v=2.3)])
    assert f.qty == D("0.230")


def test_gtc_limit_partial_fills_across_bars() -> None:
    eng = engine(max_volume_share=0.1)
    o = eng.submit(limit("a", BUY, "1.5", "101"), 1)  # marketable on arrival
    (f1,) = eng.process_step(2, [bar(100, 101, 99, 100, v=10.0)])
    # cap 0.1 × 10 = 1; taker at open 100: fee 1 × 100 × 0.00055 = 0.055
    assert (f1.qty, f1.price, f1.liquidity, f1.fee) == (D("1"), D("100"), Liquidity.TAKER, D("0.055"))
    assert o.status is S.PARTIALLY_FILLED
    assert eng.open_orders[SYM] == [o]
    (f2,) = eng.process_step(3, [bar(100.2, 101, 99, 100, v=10.0)])
    # the rest rested in the book: maker at open 100.20: fee 0.5 × 100.2 × 0.0002 = 0.01002
    assert (f2.qty, f2.price, f2.liquidity, f2.fee) == (D("0.5"), D("100.20"), Liquidity.MAKER, D("0.01002"))
    assert o.status is S.FILLED
    # avg = (100 + 0.5 × 100.2) / 1.5 = 150.1 / 1.5
    assert o.avg_price == D("150.10") / D("1.5")
    assert o.fees == D("0.06502")
    assert not eng.has_open_orders()


# --------------------------------------------------------------------------- reduce-only
def test_reduce_only_without_position_rejected() -> None:
    eng = engine()
    o = eng.submit(market("a", SELL, "1", reduce_only=True), 1)
    assert (o.status, o.reject_reason) == (S.REJECTED, "reduce_only_would_increase")


def test_reduce_only_in_direction_of_position_rejected() -> None:
    eng = engine()
    open_long(eng, "1")
    o = eng.submit(market("a", BUY, "0.5", reduce_only=True), 3)
    assert (o.status, o.reject_reason) == (S.REJECTED, "reduce_only_would_increase")


def test_reduce_only_clamped_to_position() -> None:
    eng = engine()
    open_long(eng, "1")
    o = eng.submit(market("a", SELL, "5", reduce_only=True), 3)
    assert o.status is S.NEW
    assert o.qty == D("1")
    (f,) = eng.process_step(4, [bar(105, 106, 104, 105)])
    assert f.qty == D("1")
    assert f.realised_pnl == D("5")  # 1 × (105 − 100)
    assert eng.position_qty(SYM) == 0
    assert o.status is S.FILLED


def test_two_reduce_only_orders_never_flip_the_position() -> None:
    eng = engine()
    open_long(eng, "1")
    a = eng.submit(market("a", SELL, "1", reduce_only=True), 3)
    b = eng.submit(limit("b", SELL, "1", "99", reduce_only=True), 3)
    fills = eng.process_step(4, [bar(100, 101, 98, 100)])
    assert [f.trade_id for f in fills] == ["a"]
    assert eng.position_qty(SYM) == 0
    assert a.status is S.FILLED
    assert b.status is S.CANCELLED
    assert b.filled_qty == 0


def test_reduce_only_below_min_notional_allowed() -> None:
    eng = engine()
    open_long(eng, "1")
    o = eng.submit(market("a", SELL, "0.001", reduce_only=True), 3)  # 0.1 USDT notional
    assert o.status is S.NEW
    (f,) = eng.process_step(4, [bar(100, 100, 100, 100)])
    assert f.position_after == D("0.999")


def test_fok_reduce_only_all_or_nothing_when_position_shrinks_first() -> None:
    """A FOK order fills completely or not at all, even when its reduce-only clamp bites:
    long 1; a market sell 0.5 and a FOK reduce-only sell 1 (limit 99) arrive for the same bar.
    The market sell fills first, leaving 0.5; the FOK cannot fill its 1 → nothing, cancelled."""
    eng = engine()
    open_long(eng, "1")
    eng.submit(market("m", SELL, "0.5"), 3)
    fok = eng.submit(limit("fok", SELL, "1", "99", TimeInForce.FOK, reduce_only=True), 3)
    assert fok.qty == D("1")
    eng.process_step(4, [bar(100, 101, 99, 100)])
    assert fok.status is S.CANCELLED
    assert fok.filled_qty == 0
    assert eng.position_qty(SYM) == D("0.5")


# --------------------------------------------------------------------------- funding
def test_funding_long_pays() -> None:
    eng = engine(**ZERO_FEES)
    open_long(eng, "1")
    # open 101.005 → round_price half-even → 101.00; 1 × 101.00 × 0.0001 × 2 = 0.0202
    eng.process_step(3, [bar(101.005, 102, 100, 101, funding=2)])
    assert eng.account.wallet_balance == D("999.9798")
    assert eng.account.funding_paid == D("0.0202")
    (p,) = eng.funding
    assert (p.ts, p.symbol, p.position, p.mark, p.rate, p.amount) == (
        3,
        SYM,
        D("1"),
        D("101.00"),
        D("0.0002"),
        D("0.0202"),
    )


def test_funding_short_receives() -> None:
    eng = engine(**ZERO_FEES, funding_rate=D("0.0003"))
    eng.submit(market("s", SELL, "2"), 1)
    eng.process_step(2, [bar(100, 100, 100, 100)])
    # −2 × 99.50 × 0.0003 × 1 = −0.0597 → the short receives 0.0597
    eng.process_step(3, [bar(99.5, 100, 99, 99.5, funding=1)])
    assert eng.account.wallet_balance == D("1000.0597")
    assert eng.funding[0].amount == D("-0.0597")


def test_negative_rate_long_receives() -> None:
    eng = engine(**ZERO_FEES, funding_rate=D("-0.0001"))
    open_long(eng, "1")
    eng.process_step(3, [bar(100, 100, 100, 100, funding=1)])
    assert eng.account.wallet_balance == D("1000.0100")  # 1 × 100 × −0.0001 = −0.01 paid


def test_funding_at_open_before_matching() -> None:
    """An order filling at the funding bar's open is not yet held when funding is settled."""
    eng = engine(**ZERO_FEES)
    eng.submit(market("a", BUY, "1"), 1)
    eng.process_step(2, [bar(100, 100, 100, 100, funding=1)])
    assert eng.position_qty(SYM) == D("1")
    assert eng.funding == []
    assert eng.account.wallet_balance == D("1000")


def test_no_funding_when_flat_or_zero_rate() -> None:
    eng = engine(funding_rate=D(0))
    open_long(eng, "1")
    eng.process_step(3, [bar(100, 100, 100, 100, funding=3)])
    assert eng.funding == []


# --------------------------------------------------------------------------- margin
@pytest.mark.parametrize(
    ("leverage", "qty", "accepted"),
    [
        # lev 1, mark 100: need = q × 100 + q × 100 × 0.00055
        ("1", "0.999", True),  # 99.9 + 0.0549450 = 99.954945 <= 100
        ("1", "1", False),  # 100 + 0.055 = 100.055 > 100
        # lev 10: need = q × 100 / 10 + q × 100 × 0.00055
        ("10", "9.94", True),  # 99.4 + 0.5467 = 99.9467 <= 100
        ("10", "9.95", False),  # 99.5 + 0.54725 = 100.04725 > 100
    ],
)
def test_margin_for_opening_order(leverage: str, qty: str, accepted: bool) -> None:
    eng = engine(cash="100", leverage=D(leverage))
    o = eng.submit(market("a", BUY, qty), 1)
    if accepted:
        assert o.status is S.NEW
    else:
        assert (o.status, o.reject_reason) == (S.REJECTED, "insufficient_available_balance")


def test_margin_counts_pending_orders() -> None:
    eng = engine(cash="100")
    # limit buy 0.5 @ 90: need 45 + 0.02475 = 45.02475 <= 100 → accepted; order margin 45
    assert eng.submit(limit("l", BUY, "0.5", "90"), 1).status is S.NEW
    assert eng.available_balance() == D("55.0")  # 100 − 0.5 × 90 / 1
    # market buy 0.55 @ mark 100: need 55 + 0.03025 = 55.03025 > 55 → rejected
    assert eng.submit(market("a", BUY, "0.55"), 1).reject_reason == "insufficient_available_balance"
    # 0.549: 54.9 + 0.0301950 = 54.930195 <= 55 → accepted
    assert eng.submit(market("b", BUY, "0.549"), 1).status is S.NEW


def test_reversal_needs_no_new_margin() -> None:
    eng = engine(cash="100")
    eng.submit(market("a", BUY, "0.99"), 1)
    (f,) = eng.process_step(2, [bar(100, 100, 100, 100)])
    # fee 0.99 × 100 × 0.00055 = 0.05445 → wallet 99.94555; IM at mark 100 = 99; available 0.94555
    assert eng.account.wallet_balance == D("99.94555")
    assert eng.available_balance() == D("0.94555")
    # +0.99 → −0.99 opens nothing net: accepted although 0.94555 would not margin a new 0.99
    o = eng.submit(market("rev", SELL, "1.98"), 3)
    assert o.status is S.NEW
    (f,) = eng.process_step(4, [bar(100, 100, 100, 100)])
    assert f.position_after == D("-0.99")
    # fee 1.98 × 100 × 0.00055 = 0.1089 → wallet 99.83665
    assert eng.account.wallet_balance == D("99.83665")
    # available is now 99.83665 − 99 = 0.83665; opening 0.05 more (the minimum notional, 5 USDT)
    # needs 0.05 × 100 + 0.05 × 100 × 0.00055 = 5.00275 > 0.83665
    assert eng.available_balance() == D("0.83665")
    assert eng.submit(market("more", SELL, "0.05"), 5).reject_reason == "insufficient_available_balance"


def test_reversal_beyond_position_needs_margin_for_the_excess() -> None:
    eng = engine(cash="100")
    open_long(eng, "0.99")
    # available 0.94555 (see above); sell 1.99 opens 0.01 short beyond the reversal:
    # need 0.01 × 100 + 1.99 × 100 × 0.00055 = 1 + 0.10945 > 0.94555
    o = eng.submit(market("rev", SELL, "1.99"), 3)
    assert o.reject_reason == "insufficient_available_balance"


# --------------------------------------------------------------------------- liquidation
def _levered(cash: str, side: Side) -> MatchingEngine:
    """Leverage 10, default fees: open 1 @ 100 (fee 0.055) on the step at ts=2."""
    eng = engine(cash=cash, leverage=D("10"))
    # need 1 × 100 / 10 + 0.055 = 10.055 <= cash
    assert eng.submit(market("open", side, "1"), 1).status is S.NEW
    (f,) = eng.process_step(2, [bar(100, 100, 100, 100)])
    assert f.price == D("100")
    return eng


def test_liquidation_long() -> None:
    eng = _levered("11", BUY)
    # wallet 11 − 0.055 = 10.945; a resting buy far below is cancelled by the liquidation
    # (its margin: 0.1 × 50 / 10 + 0.00275 = 0.50275 <= 11 − 10 order/position margin)
    rest = eng.submit(limit("rest", BUY, "0.1", "50"), 3)
    assert rest.status is S.NEW
    assert eng.account.wallet_balance == D("10.945")
    # a step above the trigger: equity at low 99 = 10.945 − 1 = 9.945 > MM 0.495
    assert eng.process_step(4, [bar(100, 100, 99, 99.5)]) == []
    assert eng.liquidations == 0
    # trigger p: 10.945 + p − 100 = 0.005 p → p = 89.055 / 0.995 = 89.50251… → tick 89.50
    (f,) = eng.process_step(5, [bar(99, 99.5, 85, 88)])
    assert f.is_liquidation
    assert (f.side, f.qty, f.price, f.liquidity) == (SELL, D("1"), D("89.50"), Liquidity.TAKER)
    assert D("85") <= f.price <= D("99.5")
    # pnl = 89.50 − 100 = −10.50; fee = 89.50 × 0.00055 = 0.049225
    assert f.realised_pnl == D("-10.50")
    assert f.fee == D("0.049225")
    assert eng.account.wallet_balance == D("0.395775")  # 10.945 − 10.50 − 0.049225
    assert eng.position_qty(SYM) == 0
    assert eng.liquidations == 1
    assert rest.status is S.CANCELLED
    assert not eng.has_open_orders()
    # nothing more happens afterwards
    assert eng.process_step(6, [bar(80, 81, 70, 75)]) == []
    assert eng.liquidations == 1


def test_liquidation_short() -> None:
    eng = _levered("10.5", SELL)
    # wallet 10.5 − 0.055 = 10.445
    # trigger p: 10.445 − p + 100 = 0.005 p → p = 110.445 / 1.005 = 109.89552… → tick 109.90
    (f,) = eng.process_step(3, [bar(101, 115, 100.5, 112)])
    assert f.is_liquidation
    assert (f.side, f.qty, f.price) == (BUY, D("1"), D("109.90"))
    assert D("100.5") <= f.price <= D("115")
    # pnl = −(109.90 − 100) = −9.90; fee = 109.90 × 0.00055 = 0.060445
    assert f.realised_pnl == D("-9.90")
    assert f.fee == D("0.060445")
    assert eng.account.wallet_balance == D("0.484555")  # 10.445 − 9.90 − 0.060445
    assert eng.position_qty(SYM) == 0
    assert eng.liquidations == 1


def test_liquidation_gap_through_fills_at_open() -> None:
    eng = _levered("11", BUY)
    # trigger 89.50 (above); the bar opens at 80, beyond it → fill at the open 80
    (f,) = eng.process_step(3, [bar(80, 82, 78, 81)])
    assert f.is_liquidation
    assert f.price == D("80")
    # pnl −20; fee 80 × 0.00055 = 0.044; wallet 10.945 − 20 − 0.044 = −9.099 (bad debt)
    assert f.realised_pnl == D("-20")
    assert eng.account.wallet_balance == D("-9.099")
    assert eng.position_qty(SYM) == 0


def test_liquidation_gap_through_short() -> None:
    eng = _levered("10.5", SELL)
    # trigger 109.90; opens at 120 above it → buy back at 120
    (f,) = eng.process_step(3, [bar(120, 125, 119, 121)])
    assert f.price == D("120")
    assert f.realised_pnl == D("-20")


def test_long_no_liquidation_when_low_equals_trigger() -> None:
    eng = _levered("11.5", BUY)
    # wallet 11.445; trigger (100 − 11.445) / 0.995 = 88.555 / 0.995 = 89 exactly.
    # At low 89: equity 11.445 − 11 = 0.445, MM 89 × 0.005 = 0.445: not below → no liquidation
    assert eng.process_step(3, [bar(95, 96, 89, 90)]) == []
    assert eng.liquidations == 0
    (f,) = eng.process_step(4, [bar(90, 91, 88, 89)])
    assert f.price == D("89.00")


def test_short_no_liquidation_when_high_equals_trigger() -> None:
    eng = _levered("11.61", SELL)
    # wallet 11.61 − 0.055 = 11.555; trigger (100 + 11.555) / 1.005 = 111 exactly.
    # At high 111: equity 11.555 − 11 = 0.555, MM 111 × 0.005 = 0.555: not below → no liquidation
    assert eng.process_step(3, [bar(105, 111, 104, 110)]) == []
    assert eng.liquidations == 0
    assert eng.position_qty(SYM) == D("-1")


def test_short_liquidation_price_exact_tick() -> None:
    eng = _levered("11.61", SELL)
    # trigger is exactly 111.00 (see above); the bar trades to 112 → buy back at 111.00
    (f,) = eng.process_step(3, [bar(105, 112, 104, 110)])
    assert f.is_liquidation
    assert f.price == D("111.00")


def test_liquidation_checks_the_bar_in_which_the_position_opened() -> None:
    eng = engine(cash="11", leverage=D("10"))
    eng.submit(market("open", BUY, "1"), 1)
    # fill at open 100 (wallet 10.945), then the same bar trades down to 85 → liquidated at 89.50
    fills = eng.process_step(2, [bar(100, 100, 85, 86)])
    assert [(f.trade_id, f.price, f.is_liquidation) for f in fills] == [
        ("open", D("100"), False),
        ("liq-1-TESTUSDT", D("89.50"), True),
    ]
    assert eng.position_qty(SYM) == 0


# --------------------------------------------------------------------------- matching on arrival
# A venue whose current price is the next bar's open executes takers at once (match_on_arrival)
# and leaves only what rests to process_step of that same bar: same prices as the bar-late path.
def test_market_order_on_arrival_fills_at_the_open_with_slippage_and_tick_rule() -> None:
    eng = engine(slippage=FixedSlippage(0.001))
    o = eng.submit(market("a", BUY, "1"), 1)
    # 100.01 × 1.001 = 100.11001 → up to tick → 100.12, as test_market_slippage_rounded_against_trader
    (f,) = eng.match_on_arrival(o, 1, bar(100.01, 105.01, 95.01, 100.01))
    assert (f.price, f.liquidity, f.ts) == (D("100.12"), Liquidity.TAKER, 1)
    assert o.status is S.FILLED and not eng.has_open_orders()
    assert eng.process_step(2, [bar(100.01, 105.01, 95.01, 100.01)]) == []


def test_limit_crossing_the_open_on_arrival_fills_as_taker() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99.5"), 1)  # below the last close 100: not marketable then
    (f,) = eng.match_on_arrival(o, 1, bar(99.0, 99.8, 98.0, 99.5))  # the price now, 99, crosses it
    assert (f.price, f.liquidity) == (D("99.00"), Liquidity.TAKER)
    assert o.status is S.FILLED


def test_limit_not_crossing_on_arrival_rests_and_fills_on_the_bar_path() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99.5"), 1)
    now = bar(100.0, 100.5, 99.0, 100.2)
    assert eng.match_on_arrival(o, 1, now) == []  # the low of the bar has not traded yet
    assert o.status is S.NEW and eng.has_open_orders()
    (f,) = eng.process_step(2, [now])
    assert (f.price, f.liquidity, f.ts) == (D("99.5"), Liquidity.MAKER, 2)


def test_ioc_limit_not_crossing_on_arrival_is_cancelled_at_once() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99.5", TimeInForce.IOC), 1)
    assert eng.match_on_arrival(o, 1, bar(100.0, 100.5, 99.0, 100.2)) == []
    assert o.status is S.CANCELLED and not eng.has_open_orders()


def test_post_only_never_takes_on_arrival() -> None:
    eng = engine()
    o = eng.submit(limit("a", BUY, "1", "99.5", TimeInForce.POST_ONLY), 1)
    assert eng.match_on_arrival(o, 1, bar(99.0, 99.8, 98.0, 99.5)) == []
    assert o.status is S.NEW
    (f,) = eng.process_step(2, [bar(99.0, 99.8, 98.0, 99.5)])
    assert (f.price, f.liquidity) == (D("99.00"), Liquidity.MAKER)


def test_volume_taken_on_arrival_counts_against_the_bar() -> None:
    eng = engine(max_volume_share=0.1)
    now = bar(100, 101, 99, 100, v=5.0)  # cap 0.5
    a = eng.submit(market("a", BUY, "0.3"), 1)
    eng.match_on_arrival(a, 1, now)
    b = eng.submit(limit("b", BUY, "0.3", "99.5"), 1)  # rests: fills on the path, 0.2 left for it
    assert eng.match_on_arrival(b, 1, now) == []
    (f,) = eng.process_step(2, [now])
    assert (f.trade_id, f.qty) == ("b", D("0.2"))
    c = eng.submit(limit("c", BUY, "0.3", "99.5"), 3)  # the next bar has its own cap of 0.5
    fills = eng.process_step(4, [bar(100, 101, 99, 100, v=5.0)])
    assert [(f.trade_id, f.qty) for f in fills] == [("b", D("0.1")), ("c", D("0.3"))]
    assert b.status is S.FILLED and c.status is S.FILLED


def test_pay_funding_settles_the_bar_that_opens_before_its_orders() -> None:
    eng = engine(**ZERO_FEES)
    open_long(eng, "1")
    opening = bar(110, 110, 110, 110, funding=1)
    eng.pay_funding(3, [opening])  # 1 × 110 × 0.0001 = 0.011 paid by the long
    assert [(p.ts, p.amount) for p in eng.funding] == [(3, D("0.0110"))]
    o = eng.submit(market("b", BUY, "1"), 3)
    eng.match_on_arrival(o, 3, opening)
    assert len(eng.funding) == 1  # the new position was not held when funding was due


# --------------------------------------------------------------------------- execution ids
def test_exec_ids_default_to_a_sequence_and_take_a_factory() -> None:
    eng = engine()
    open_long(eng, "1")
    eng.submit(market("b", BUY, "1"), 3)
    eng.process_step(4, [bar(100, 100, 100, 100)])
    assert [f.exec_id for f in eng.fills] == ["E1", "E2"]  # deterministic: a backtest reproduces
    names = iter(["x", "y"])
    other = MatchingEngine([INST], D("1000"), exec_ids=lambda: next(names))
    other.process_step(0, [bar(100, 100, 100, 100)])
    other.submit(market("a", BUY, "1"), 1)
    other.process_step(2, [bar(100, 100, 100, 100)])
    assert [f.exec_id for f in other.fills] == ["x"]
