"""Stats for people and for machines: a compact Rich table with human units, and canonical JSON
with plain floats and null where a metric is undefined."""

import json
from collections.abc import Mapping
from decimal import Decimal
from math import isfinite

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

LABELS: dict[str, str] = {
    "strategy": "Strategy",
    "start": "Start",
    "end": "End",
    "bars": "Bars",
    "years": "Years",
    "bars_per_year": "Bars per year",
    "initial_cash": "Initial cash",
    "final_equity": "Final equity",
    "total_return": "Total return",
    "cagr": "CAGR",
    "annual_volatility": "Volatility (ann.)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max drawdown",
    "max_drawdown_bars": "Max DD duration (bars)",
    "max_drawdown_days": "Max DD duration",
    "exposure": "Exposure",
    "trades": "Closed trades",
    "open_trades": "Open trades",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "avg_trade_pnl": "Avg trade PnL",
    "fees_paid": "Fees paid",
    "funding_paid": "Funding paid",
    "liquidations": "Exchange liquidations",
    "guard_state": "Risk guard",
    "guard_liquidations": "Guard liquidations",
    "orders_denied": "Orders denied by guard",
}

PERCENT_KEYS = frozenset(
    {"total_return", "cagr", "annual_volatility", "max_drawdown", "exposure", "win_rate"}
)
MONEY_KEYS = frozenset({"initial_cash", "final_equity", "avg_trade_pnl", "fees_paid", "funding_paid"})
RATIO_KEYS = frozenset({"sharpe", "sortino", "profit_factor", "years", "bars_per_year"})
DAY_KEYS = frozenset({"max_drawdown_days"})
MISSING = "—"


def label(key: str) -> str:
    """Human name of a stats key; unknown keys fall back to a title-cased version.

    Lets callers add metrics without touching this table.
    """
    return LABELS.get(key, key.replace("_", " ").capitalize())


def format_value(key: str, value: object) -> str:
    """One metric in human units: percent and money with 2 decimals, durations in days.

    Midnight timestamps shrink to their date; None and non-finite numbers print as a dash.
    """
    if value is None or (isinstance(value, float) and not isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return _short_time(value)
    if isinstance(value, int) and key not in PERCENT_KEYS | MONEY_KEYS | RATIO_KEYS | DAY_KEYS:
        return f"{value:,}"
    if not isinstance(value, int | float | Decimal):
        return str(value)
    number = float(value)
    if key in PERCENT_KEYS:
        return f"{number * 100:,.2f}%"
    if key in MONEY_KEYS or key in RATIO_KEYS:
        return f"{number:,.2f}"
    if key in DAY_KEYS:
        return f"{number:,.2f} days"
    return f"{number:,.4g}"


def _short_time(text: str) -> str:
    """'2021-03-16T00:00:00.000Z' → '2021-03-16'; other ISO times lose the T, millis and Z."""
    if len(text) == 24 and text[10] == "T" and text.endswith("Z"):
        return text[:10] if text[11:] == "00:00:00.000Z" else f"{text[:10]} {text[11:16]} UTC"
    return text


def print_report(stats: Mapping[str, object], console: Console) -> None:
    """Print the stats as a two-column metric/value table, in the dict's key order.

    Compact enough to sit under a CLI run; exact values live in the JSON and CSV outputs.
    """
    title = f"Backtest: {stats['strategy']}" if stats.get("strategy") else "Backtest"
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")
    table.add_column("Metric", style="bold")
    table.add_column("Value", justify="right")
    for key, value in stats.items():
        if key == "strategy":
            continue
        table.add_row(label(key), format_value(key, value))
    console.print(table)


def _plain(value: object) -> object:
    """JSON-safe scalar: Decimal and numpy numbers become floats/ints, NaN and inf become None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def stats_to_json(stats: Mapping[str, object]) -> str:
    """Serialise stats as indented JSON in the dict's own (fixed) key order.

    Numbers are plain floats; an undefined metric is null, never NaN, so any JSON parser accepts it.
    """
    return json.dumps(_plain(stats), indent=2, allow_nan=False, default=str)
