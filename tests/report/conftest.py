"""Builders for hand-made fills and backtest results shared by the report tests."""

from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np
import pytest

from methtrader.engine.result import BacktestResult
from methtrader.model import Fill, Liquidity, Side

DAY_MS = 86_400_000
T0 = 1_609_459_200_000  # 2021-01-01T00:00:00Z

FillFactory = Callable[..., Fill]
ResultFactory = Callable[..., BacktestResult]


def _fill(
    side: str,
    qty: str,
    price: str,
    fee: str = "0",
    ts: int = 0,
    *,
    symbol: str = "BTCUSDT",
    realised: str = "0",
    position_after: str = "0",
    liquidation: bool = False,
    n: int = 0,
) -> Fill:
    return Fill(
        exec_id=f"e{n or ts}",
        trade_id=f"t{n or ts}",
        symbol=symbol,
        side=Side(side),
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal(fee),
        liquidity=Liquidity.TAKER,
        ts=ts,
        realised_pnl=Decimal(realised),
        position_after=Decimal(position_after),
        is_liquidation=liquidation,
    )


def _result(
    equity: Sequence[float],
    *,
    ts: Sequence[int] | None = None,
    gross: Sequence[float] | None = None,
    fills: Sequence[Fill] = (),
    strategy: str = "sma_cross",
    params: dict[str, object] | None = None,
    fees: str = "0",
    funding: str = "0",
    liquidations: int = 0,
) -> BacktestResult:
    eq = np.asarray(equity, dtype=float)
    times = np.asarray(ts if ts is not None else T0 + DAY_MS * np.arange(eq.size), dtype=np.int64)
    return BacktestResult(
        strategy=strategy,
        params=params if params is not None else {"fast": 10, "slow": 30},
        symbols=sorted({f.symbol for f in fills}) or ["BTCUSDT"],
        ts=times,
        equity=eq,
        gross_exposure=np.asarray(gross if gross is not None else np.zeros(eq.size), dtype=float),
        fills=list(fills),
        orders=[],
        initial_cash=Decimal(str(eq[0])) if eq.size else Decimal(0),
        wallet_balance=Decimal(str(eq[-1])) if eq.size else Decimal(0),
        fees_paid=Decimal(fees),
        funding_paid=Decimal(funding),
        bar_interval_ms=DAY_MS,
        liquidations=liquidations,
    )


@pytest.fixture
def make_fill() -> FillFactory:
    return _fill


@pytest.fixture
def make_result() -> ResultFactory:
    return _result
