"""Statistics on small equity curves whose values are worked out by hand in each test."""

import json
import math
from decimal import Decimal

import numpy as np
import pytest
from rich.console import Console

from methtrader.report import compute_stats, drawdown_series, print_report, stats_to_json
from methtrader.report.stats import (
    cagr,
    max_drawdown,
    max_drawdown_duration,
    observed_bars_per_year,
    simple_returns,
    sortino_ratio,
)

pytestmark = pytest.mark.filterwarnings("error")

DAY_MS = 86_400_000
T0 = 1_609_459_200_000  # 2021-01-01T00:00:00Z

EXPECTED_KEYS = [
    "strategy",
    "start",
    "end",
    "bars",
    "years",
    "bars_per_year",
    "initial_cash",
    "final_equity",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_bars",
    "max_drawdown_days",
    "exposure",
    "trades",
    "open_trades",
    "win_rate",
    "profit_factor",
    "avg_trade_pnl",
    "fees_paid",
    "funding_paid",
    "liquidations",
]


def test_four_bar_curve_by_hand(make_result):
    stats = compute_stats(make_result([100, 110, 99, 121], gross=[0, 50, 50, 0]))
    r1, r2, r3 = 110 / 100 - 1, 99 / 110 - 1, 121 / 99 - 1  # 0.1, -0.1, 0.2222…
    mean = (r1 + r2 + r3) / 3
    var = ((r1 - mean) ** 2 + (r2 - mean) ** 2 + (r3 - mean) ** 2) / (3 - 1)
    per_year = 3 / (3 / 365.25)  # 3 steps over 3 days
    downside = math.sqrt((0 + r2**2 + 0) / 3)

    assert list(stats) == EXPECTED_KEYS
    assert stats["start"] == "2021-01-01T00:00:00.000Z"
    assert stats["end"] == "2021-01-04T00:00:00.000Z"
    assert stats["bars"] == 4
    assert stats["bars_per_year"] == pytest.approx(365.25)
    assert stats["total_return"] == pytest.approx(0.21)
    assert stats["final_equity"] == 121.0
    assert stats["annual_volatility"] == pytest.approx(math.sqrt(var) * math.sqrt(per_year))
    assert stats["sharpe"] == pytest.approx(mean / math.sqrt(var) * math.sqrt(per_year))
    assert stats["sortino"] == pytest.approx(mean / downside * math.sqrt(per_year))
    assert stats["max_drawdown"] == pytest.approx(-0.1)  # 99 / 110 − 1
    assert stats["max_drawdown_bars"] == 2  # peak at bar 1, regained at bar 3
    assert stats["max_drawdown_days"] == 2.0
    assert stats["exposure"] == 0.5
    assert stats["cagr"] == pytest.approx(1.21 ** (365.25 / 3) - 1)


def test_cagr_of_exact_two_year_doubling():
    two_years_ms = int(2 * 365.25 * DAY_MS)
    assert cagr(np.array([100.0, 200.0]), np.array([0, two_years_ms])) == pytest.approx(math.sqrt(2) - 1)


def test_observed_bars_per_year_counts_trading_days_not_calendar_days():
    # 253 weekday-like bars spread evenly over exactly one calendar year → 252 steps per year.
    ts = np.linspace(0, 365.25 * DAY_MS, 253).astype(np.int64)
    assert observed_bars_per_year(ts) == pytest.approx(252, rel=1e-9)


def test_drawdown_series_and_never_recovered_tail():
    equity = np.array([100.0, 120, 90, 120, 130, 65])
    assert drawdown_series(equity) == pytest.approx([0, 0, -0.25, 0, 0, -0.5])
    assert max_drawdown(equity) == pytest.approx(-0.5)
    ts = T0 + DAY_MS * np.arange(6)
    # episodes: bar 1 → bar 3 (2 bars), bar 4 → end at bar 5 (1 bar)
    assert max_drawdown_duration(equity, ts) == (2, 2.0)


def test_duration_bars_and_days_are_each_the_longest():
    equity = np.array([100.0, 90, 100, 90, 80, 100])
    # episode A: bars 0→2 over 10 days; episode B: bars 2→5 over 3 days
    ts = T0 + DAY_MS * np.array([0, 5, 10, 11, 12, 13])
    assert max_drawdown_duration(equity, ts) == (3, 10.0)


def test_constant_equity_has_no_sharpe_and_no_warnings(make_result):
    stats = compute_stats(make_result([100, 100, 100, 100]))
    assert stats["annual_volatility"] == 0.0
    assert stats["sharpe"] is None
    assert stats["sortino"] is None
    assert stats["total_return"] == 0.0
    assert stats["max_drawdown"] == 0.0
    assert stats["max_drawdown_bars"] == 0
    assert stats["max_drawdown_days"] == 0.0


def test_single_bar(make_result):
    stats = compute_stats(make_result([100]))
    assert stats["bars"] == 1
    assert stats["total_return"] == 0.0
    assert stats["start"] == stats["end"]
    for key in ("cagr", "bars_per_year", "annual_volatility", "sharpe", "sortino"):
        assert stats[key] is None, key
    assert stats["max_drawdown"] == 0.0
    assert stats["exposure"] == 0.0


def test_empty_result_does_not_crash(make_result):
    stats = compute_stats(make_result([]))
    assert stats["bars"] == 0
    assert stats["start"] is None
    assert stats["final_equity"] is None
    assert stats["max_drawdown"] is None


def test_no_trades(make_result):
    stats = compute_stats(make_result([100, 101, 102]))
    assert stats["trades"] == 0
    assert stats["open_trades"] == 0
    assert stats["win_rate"] is None
    assert stats["profit_factor"] is None
    assert stats["avg_trade_pnl"] is None


def test_trade_metrics(make_result, make_fill):
    fills = [
        make_fill("Buy", "1", "100", "1", 1),
        make_fill("Sell", "1", "110", "1", 2, realised="10"),  # +8
        make_fill("Buy", "1", "100", "1", 3),
        make_fill("Sell", "1", "96", "1", 4, realised="-4"),  # −6
        make_fill("Sell", "1", "100", "0", 5),
        make_fill("Buy", "1", "90", "0", 6, realised="10"),  # +10
        make_fill("Buy", "1", "90", "0", 7),  # still open
    ]
    stats = compute_stats(make_result([100, 100, 100], fills=fills, fees="4", funding="0.5", liquidations=1))
    assert stats["trades"] == 3
    assert stats["open_trades"] == 1
    assert stats["win_rate"] == pytest.approx(2 / 3)
    assert stats["profit_factor"] == pytest.approx((8 + 10) / 6)
    assert stats["avg_trade_pnl"] == pytest.approx((8 - 6 + 10) / 3)
    assert stats["fees_paid"] == 4.0
    assert stats["funding_paid"] == 0.5
    assert stats["liquidations"] == 1


def test_profit_factor_none_without_losers(make_result, make_fill):
    fills = [make_fill("Buy", "1", "1", ts=1), make_fill("Sell", "1", "2", ts=2, realised="1")]
    stats = compute_stats(make_result([100, 101], fills=fills))
    assert stats["win_rate"] == 1.0
    assert stats["profit_factor"] is None


def test_wiped_out_equity_gives_no_warnings():
    equity = np.array([100.0, 0.0, 0.0])
    assert simple_returns(equity) == pytest.approx([-1.0, 0.0])
    assert cagr(equity, np.array([0, DAY_MS, 2 * DAY_MS])) == -1.0
    assert sortino_ratio(simple_returns(equity), 365.25) is not None


def test_stats_to_json_is_null_for_nan_and_keeps_order():
    stats = {"b": float("nan"), "a": Decimal("1.5"), "c": np.float64(2.0), "d": None, "e": "x"}
    text = stats_to_json(stats)
    assert "NaN" not in text
    assert list(json.loads(text).items()) == [
        ("b", None),
        ("a", 1.5),
        ("c", 2.0),
        ("d", None),
        ("e", "x"),
    ]


def test_print_report_formats_human_units(make_result):
    stats = compute_stats(make_result([100, 110, 99, 121], gross=[0, 50, 50, 0]))
    console = Console(record=True, width=100, color_system=None)
    print_report(stats, console)
    text = console.export_text()
    assert "sma_cross" in text
    assert "21.00%" in text  # total return
    assert "-10.00%" in text  # max drawdown
    assert "2.00 days" in text
    assert "121.00" in text
    assert "2021-01-01" in text
    assert "Win rate" in text and "—" in text
