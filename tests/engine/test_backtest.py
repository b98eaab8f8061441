"""The backtest runner: vectorised and event-driven modes agree, baskets share one account,
liquidations and funding go through the same code, and real data runs end to end."""

from decimal import Decimal

import numpy as np
import pytest

from methtrader.data import gbm_bars, resolve_bars
from methtrader.engine.backtest import BacktestRunner, run_backtest
from methtrader.exchange.sim.matching import SimConfig
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.model import BarSeries
from methtrader.model.instrument import generic_perpetual
from methtrader.strategies import SMA, SmaCross, Strategy

SYNTH = generic_perpetual("SYNTHUSDT")


def _fills(result):
    return [
        (f.trade_id, f.side, f.qty, f.price, f.fee, f.ts, f.realised_pnl, f.is_liquidation)
        for f in result.fills
    ]


@pytest.mark.parametrize(
    "config",
    [
        SimConfig(funding_rate=Decimal(0)),
        SimConfig(funding_rate=Decimal("0.0003"), leverage=Decimal(3), slippage=FixedSlippage(0.0005)),
        SimConfig(leverage=Decimal(50), max_volume_share=0.5),
    ],
    ids=["plain", "funding-leverage-slippage", "liquidations-volume-cap"],
)
def test_vectorised_and_event_modes_produce_the_same_ledger(config):
    series = gbm_bars(20_000, seed=5, symbol="SYNTHUSDT", annual_vol=2.0, interval_ms=3_600_000)
    runs = [
        run_backtest(
            SmaCross(fast=8, slow=21, qty=5), [(series, SYNTH)], Decimal(1_000), config, vectorised=v
        )
        for v in (True, False)
    ]
    fast, slow = runs
    assert fast.meta["vectorised"] and not slow.meta["vectorised"]
    assert len(fast.fills) > 100
    assert _fills(fast) == _fills(slow)
    assert np.array_equal(fast.equity, slow.equity)
    assert np.array_equal(fast.gross_exposure, slow.gross_exposure)
    assert (fast.wallet_balance, fast.fees_paid, fast.funding_paid) == (
        slow.wallet_balance,
        slow.fees_paid,
        slow.funding_paid,
    )
    assert fast.liquidations == slow.liquidations
    if config.leverage == 50:
        assert fast.liquidations > 0


def test_portfolio_ledger_equals_venue_account():
    series = gbm_bars(5_000, seed=2, symbol="SYNTHUSDT", annual_vol=2.0, interval_ms=3_600_000)
    runner = BacktestRunner(
        SmaCross(qty=3), [(series, SYNTH)], Decimal(1_000), SimConfig(leverage=Decimal(20))
    )
    runner.run()
    ours, venue = runner.portfolio.account, runner.venue.account
    assert ours.wallet_balance == venue.wallet_balance
    assert {s: (p.qty, p.cost) for s, p in ours.positions.items()} == {
        s: (p.qty, p.cost) for s, p in venue.positions.items()
    }


def test_equity_curve_matches_the_ledger_at_the_end():
    series = gbm_bars(3_000, seed=4, symbol="SYNTHUSDT")
    result = run_backtest(SmaCross(qty=2), [(series, SYNTH)], Decimal(10_000))
    pos = result.fills[-1].position_after
    cost = sum((f.signed_qty * f.price for f in result.fills if f.symbol == "SYNTHUSDT"), Decimal(0))
    # the last fill's position is still open: its unrealised PnL is qty × close − entry cost
    assert pos != 0
    last_close = Decimal(repr(float(np.round(series.close[-1], 2))))
    equity = float(result.wallet_balance) + float(pos) * float(last_close) - float(_open_cost(result.fills))
    assert result.equity[-1] == pytest.approx(equity, rel=1e-12)
    assert cost  # fills happened


def _open_cost(fills):
    qty = Decimal(0)
    cost = Decimal(0)
    for f in fills:
        new = qty + f.signed_qty
        if qty == 0 or (qty > 0) == (f.signed_qty > 0):
            cost += f.signed_qty * f.price
        elif new == 0 or (new > 0) != (qty > 0):
            cost = new * f.price
        else:
            cost -= cost * abs(f.signed_qty) / abs(qty)
        qty = new
    return cost


class PairTrade(Strategy):
    """Long the first symbol, short the second, whenever each has its own fast SMA above/below."""

    qty: Decimal = Decimal(1)

    def indicators(self):
        return {"fast": SMA(3), "slow": SMA(12)}

    def signal(self, x):
        return np.where(x.fast > x.slow, float(self.qty), -float(self.qty))


def test_basket_on_merged_timeline_with_one_account():
    hourly = gbm_bars(2_000, seed=1, symbol="AAAUSDT", interval_ms=3_600_000)
    raw = gbm_bars(1_000, seed=2, symbol="BBBUSDT", interval_ms=7_200_000, start_ms=int(hourly.ts[0]))
    # half past the hour: every second-symbol bar falls between two first-symbol bars
    two_hourly = BarSeries(raw.symbol, raw.ts + 1_800_000, raw.open, raw.high, raw.low, raw.close, raw.volume)
    data = [(hourly, generic_perpetual("AAAUSDT")), (two_hourly, generic_perpetual("BBBUSDT"))]
    runs = [run_backtest(PairTrade(), data, Decimal(100_000), vectorised=v) for v in (True, False)]
    fast, slow = runs
    assert _fills(fast) == _fills(slow)
    assert np.array_equal(fast.equity, slow.equity)
    assert len(fast.ts) == 3_000 and np.all(np.diff(fast.ts) > 0)
    symbols = {f.symbol for f in fast.fills}
    assert symbols == {"AAAUSDT", "BBBUSDT"}
    assert [f.ts for f in fast.fills] == sorted(f.ts for f in fast.fills)
    # each symbol's fills happen only at its own bar times
    for symbol, series in (("AAAUSDT", hourly), ("BBBUSDT", two_hourly)):
        assert {f.ts for f in fast.fills if f.symbol == symbol} <= set(series.ts.tolist())


def test_end_to_end_on_shipped_hourly_btc():
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    result = run_backtest(SmaCross(), [(series, instrument)], Decimal(10_000))
    assert len(result.equity) == len(series) == 17_491
    assert result.fills and all(f.symbol == "BTCUSDT" for f in result.fills)
    assert all(f.qty == Decimal("0.1") or f.qty == Decimal("0.2") for f in result.fills)
    assert all(f.price % instrument.tick_size == 0 for f in result.fills)
    assert result.fees_paid == sum((f.fee for f in result.fills), Decimal(0))
    assert result.funding_paid != 0
    assert result.equity.min() > 5_000 and result.equity.max() < 20_000


def test_funding_only_settles_at_eight_hour_boundaries():
    series = gbm_bars(48, seed=1, symbol="SYNTHUSDT", interval_ms=3_600_000, start_ms=1_600_041_600_000)
    runner = BacktestRunner(SmaCross(fast=2, slow=3, qty=1), [(series, SYNTH)], Decimal(100_000))
    runner.run()
    assert runner.venue.funding
    assert all(p.ts % (8 * 3_600_000) == 0 for p in runner.venue.funding)


def test_runner_rejects_bad_setups():
    series = gbm_bars(10, symbol="SYNTHUSDT")
    with pytest.raises(ValueError, match="at least one"):
        BacktestRunner(SmaCross(), [])
    with pytest.raises(ValueError, match="duplicate symbols"):
        BacktestRunner(SmaCross(), [(series, SYNTH), (series, SYNTH)])
    with pytest.raises(ValueError, match="leverage"):
        BacktestRunner(SmaCross(), [(series, SYNTH)], config=SimConfig(leverage=Decimal(500)))


def test_bars_are_snapped_to_the_tick():
    raw = gbm_bars(200, seed=8, symbol="SYNTHUSDT")
    wobbly = BarSeries(
        raw.symbol, raw.ts, raw.open + 1e-7, raw.high + 1e-7, raw.low + 1e-7, raw.close + 1e-7, raw.volume
    )
    result = run_backtest(SmaCross(fast=2, slow=5, qty=1), [(wobbly, SYNTH)], Decimal(10_000))
    assert result.fills and all(f.price == f.price.quantize(Decimal("0.01")) for f in result.fills)
