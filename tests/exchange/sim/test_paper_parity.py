"""Orders on the simulator execute when they arrive, as on Bybit, at the price a backtest gives
them: between two replayed bars the current price is the next bar's open."""

from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import numpy as np
from pybit.unified_trading import HTTP

from methtrader.data import gbm_bars, resolve_bars
from methtrader.engine.backtest import BacktestRunner
from methtrader.exchange.sim.matching import SimConfig
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.exchange.sim.venue import SimExchange
from methtrader.model import BarSeries, Liquidity, OrderStatus
from methtrader.model.instrument import generic_perpetual, to_decimal
from methtrader.strategies import SmaCross


def test_market_order_is_filled_when_it_arrives_at_the_current_price(tmp_path: Path) -> None:
    """It used to wait for the next step of the replay: a minute at --speed 60 on hourly bars."""
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=0, cash=Decimal(100_000))
    key, secret, _ = exchange.add_key()
    index = exchange.index
    now = to_decimal(float(series.open[index + 1]))  # the bar after the last shown one has opened
    expected = (now / instrument.tick_size).to_integral_value(ROUND_CEILING) * instrument.tick_size
    assert series.low[index + 1] <= expected <= series.high[index + 1]  # a buy rounds up, in range
    with BackgroundServer(exchange) as srv:
        session = HTTP(api_key=key, api_secret=secret)
        session.endpoint = srv.url
        order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.01"}
        placed = session.place_order(**order, orderType="Market", orderLinkId="now-1")
        assert placed["retCode"] == 0
        [row] = session.get_open_orders(category="linear", orderLinkId="now-1")["result"]["list"]
        assert (row["orderStatus"], row["cumExecQty"], Decimal(row["avgPrice"])) == (
            "Filled",
            "0.010",
            expected,
        )
        [execution] = session.get_executions(category="linear", orderLinkId="now-1")["result"]["list"]
        assert Decimal(execution["execPrice"]) == expected and execution["isMaker"] is False
        crossing = session.place_order(**order, orderType="Limit", price=str(expected + 100), orderLinkId="x")
        resting = session.place_order(**order, orderType="Limit", price=str(expected - 100), orderLinkId="r")
        assert crossing["retCode"] == resting["retCode"] == 0
        statuses = {
            o["orderLinkId"]: (o["orderStatus"], Decimal(o["avgPrice"] or 0))
            for o in session.get_order_history(category="linear")["result"]["list"]
        }
        assert statuses["x"] == ("Filled", expected)  # crosses the price now: a taker at it
        assert statuses["r"][0] == "New"
    assert exchange.index == index  # nothing was replayed meanwhile


def test_an_amended_limit_that_crosses_the_price_now_fills_at_once(tmp_path: Path) -> None:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=0, cash=Decimal(100_000))
    _, _, uid = exchange.add_key()
    now = float(series.open[exchange.index + 1])
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Limit", "qty": "0.01"}
    exchange.create_order(
        uid, {**order, "price": str(int(series.high[exchange.index + 1]) + 100), "orderLinkId": "a"}
    )
    [resting] = exchange.open_orders(uid)
    exchange.amend_order(uid, {"category": "linear", "orderLinkId": "a", "price": str(int(now) - 50)})
    assert resting.status is OrderStatus.FILLED and exchange.open_orders(uid) == []
    [fill] = exchange.accounts[uid].engine.fills
    assert fill.liquidity is Liquidity.TAKER and abs(fill.price - to_decimal(now)) < instrument.tick_size


def _gapped(n: int) -> BarSeries:
    """Hourly bars on a 0.01 grid whose opens gap away from the previous close, so that filling at
    the last close instead of the next open would show."""
    raw = gbm_bars(n, seed=11, interval_ms=3_600_000, symbol="SYNTHUSDT")
    gaps = np.random.default_rng(11).normal(0, 0.2, n)
    o = np.round(raw.open + gaps, 2)
    c = np.round(raw.close, 2)
    h = np.maximum(np.round(raw.high, 2), np.maximum(o, c))
    low = np.minimum(np.round(raw.low, 2), np.minimum(o, c))
    return BarSeries(raw.symbol, raw.ts, o, h, low, c, raw.volume)


def test_a_paper_replay_trades_and_pays_funding_like_the_backtest(tmp_path: Path) -> None:
    """The backtest's orders, sent to the simulator after the bar they were decided on, fill at
    once, at the backtest's prices, fees and liquidity; funding is due on the same positions."""
    series, instrument = _gapped(600), generic_perpetual("SYNTHUSDT")
    config = SimConfig(slippage=FixedSlippage(0.0003), funding_rate=Decimal("0.0001"))
    runner = BacktestRunner(
        SmaCross(fast=5, slow=20, qty=Decimal(1)), [(series, instrument)], Decimal(100_000), config
    )
    backtest = runner.run()
    bar_of = {int(t): i for i, t in enumerate(series.ts)}
    decided: dict[int, list[tuple[str, Decimal]]] = {}
    for fill in backtest.fills:  # a fill at bar k was decided on bar k - 1
        decided.setdefault(bar_of[fill.ts] - 1, []).append((fill.side.value, fill.qty))
    assert len(backtest.fills) > 20 and runner.venue.funding

    exchange = SimExchange(
        series, instrument, state_dir=tmp_path, history=0, speed=0, cash=Decimal(100_000), config=config
    )
    _, _, uid = exchange.add_key()
    engine = exchange.account(uid).engine
    while True:
        for side, qty in decided.get(exchange.index, []):
            params = {
                "category": "linear",
                "symbol": "SYNTHUSDT",
                "side": side,
                "orderType": "Market",
                "qty": str(qty),
            }
            exchange.create_order(uid, params)
            assert not engine.has_open_orders()  # filled on arrival, not at the next step
        if not exchange.step():
            break

    def trades(fills: list) -> list[tuple[object, ...]]:
        return [(f.side, f.qty, f.price, f.fee, f.liquidity, f.realised_pnl) for f in fills]

    assert trades(engine.fills) == trades(backtest.fills)
    assert [(p.position, p.mark, p.amount) for p in engine.funding] == [
        (p.position, p.mark, p.amount) for p in runner.venue.funding
    ]
    assert engine.account.wallet_balance == backtest.wallet_balance
