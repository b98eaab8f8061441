"""A book of positions — from a JSON file, or the running account on the exchange — and its VaR/ES
by every method side by side.

    {"equity": 10000, "positions": [{"symbol": "BTCUSDT", "qty": "0.25", "data": "btcusd-daily"}]}

`data` names a shipped dataset or an OHLCV file giving the symbol's price history; for the account,
the exchange's own klines are the history.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from methtrader.data import DataError, resolve_bars
from methtrader.model import BarSeries
from methtrader.risk.var import returns_from_prices, var_table

if TYPE_CHECKING:
    from methtrader.exchange.bybit.adapter import BybitAdapter


@dataclass(frozen=True)
class Book:
    equity: float
    positions: list[tuple[str, float, BarSeries]]


def load_positions(path: Path) -> Book:
    """Parse and validate a position file; DataError with the file and the reason otherwise."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    try:
        equity = float(raw["equity"])
        entries = raw["positions"]
        positions = []
        for entry in entries:
            qty = float(entry["qty"])
            series, _ = resolve_bars(str(entry["data"]), str(entry["symbol"]))
            positions.append((str(entry["symbol"]), qty, series))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: needs equity and positions[{{symbol, qty, data}}] ({exc!r})") from None
    if not equity > 0 or not positions:
        raise DataError(f"{path}: equity must be > 0 and at least one position given")
    if len({s for s, _, _ in positions}) != len(positions):
        raise DataError(f"{path}: a symbol appears twice")
    return Book(equity, positions)


def var_report(book: Book, confidence: float, horizon: int, window: int) -> list[dict[str, float | str]]:
    """Returns over the last `window` common timestamps, values at the last common close."""
    common = book.positions[0][2].ts
    for _, _, series in book.positions[1:]:
        common = np.intersect1d(common, series.ts)
    if len(common) < 3:
        raise DataError("the position histories share fewer than 3 timestamps")
    common = common[-(window + 1) :]
    closes = [series.close[np.searchsorted(series.ts, common)] for _, _, series in book.positions]
    returns = np.column_stack([returns_from_prices(c) for c in closes])
    values = np.array([qty * c[-1] for (_, qty, _), c in zip(book.positions, closes, strict=True)])
    if returns.shape[1] == 1:
        return var_table(returns[:, 0], float(values[0]), book.equity, confidence, horizon)
    return var_table(returns, values, book.equity, confidence, horizon)


async def account_book(adapter: "BybitAdapter", interval: str = "1h", bars: int = 1000) -> Book:
    """The book of the account behind `adapter` (Bybit or the simulator): USDT equity, every open
    linear position, and the last `bars` klines of each symbol as its price history."""
    balance = await adapter.fetch_balance()
    equity = float((balance.get("USDT") or {}).get("total") or 0)
    positions = []
    for raw in await adapter.fetch_positions():
        contracts = float(raw.get("contracts") or 0)
        if not contracts:
            continue
        info = raw.get("info") or {}
        symbol = str(info.get("symbol") or raw["symbol"])
        qty = contracts if raw.get("side") == "long" else -contracts
        klines = await adapter.fetch_klines(symbol, interval, limit=bars)
        if len(klines) < 3:
            raise DataError(f"{symbol}: the exchange returned {len(klines)} klines, too few for VaR")
        positions.append((symbol, qty, BarSeries.from_bars(klines)))
    if not equity > 0:
        raise DataError(f"the account's USDT equity is {equity:g}: nothing to measure VaR against")
    return Book(equity, positions)
