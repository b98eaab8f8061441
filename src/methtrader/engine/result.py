"""What a backtest returns: the equity curve on the merged timeline, every order and fill."""

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from methtrader.model import Fill, Order


@dataclass
class BacktestResult:
    """Arrays are aligned on `ts` (bar open times, Unix ms, the merged timeline of all symbols).

    `equity[i]` is account equity marked at bar i's close; `gross_exposure[i]` the sum of
    |qty| × close over symbols held at that close (0 when flat).
    """

    strategy: str
    params: dict[str, object]
    symbols: list[str]
    ts: np.ndarray
    equity: np.ndarray
    gross_exposure: np.ndarray
    fills: list[Fill]
    orders: list[Order]
    initial_cash: Decimal
    wallet_balance: Decimal
    fees_paid: Decimal
    funding_paid: Decimal
    bar_interval_ms: int
    liquidations: int = 0
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # signed qty held at each close
    meta: dict[str, object] = field(default_factory=dict)
