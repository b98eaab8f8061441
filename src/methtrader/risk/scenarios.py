"""Crash scenarios: replay real windows of the shipped data (2008, 2020, 2022) through the engine
with the guard on and off, and report what the guard did and what it saved."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from methtrader.data import DataError, resolve_bars
from methtrader.engine.backtest import BacktestRunner
from methtrader.engine.result import BacktestResult
from methtrader.exchange.sim.matching import SimConfig
from methtrader.model import BarSeries, Instrument, OrderStatus
from methtrader.model.bar import DAY_MS
from methtrader.report.stats import drawdown_series
from methtrader.risk.guard import GuardConfig, RiskGuard
from methtrader.strategies import Strategy


@dataclass(frozen=True)
class Leg:
    """One replayed window: `warmup_bars` before `start` give the VaR and indicators history."""

    name: str
    data: str
    start: str | None = None
    end: str | None = None
    warmup_bars: int = 60


SCENARIOS: dict[str, tuple[Leg, ...]] = {
    "gfc-2008": (Leg("spx-gfc", "spx-daily", "2008-09-01", "2009-04-01"),),
    "covid-2020": (
        Leg("btc-covid", "btcusd-daily", "2020-02-01", "2020-05-01"),
        Leg("spx-covid", "spx-daily", "2020-02-01", "2020-05-01"),
        Leg("btc-1h-march", "btcusdt-1h-2019-2020", "2020-03-12", "2020-03-14"),
    ),
    "crypto-2022": (
        Leg("btc-luna", "btcusd-daily", "2022-05-01", "2022-07-01"),
        Leg("btc-ftx", "btcusd-daily", "2022-11-01", "2022-12-01"),
        Leg("ndx-2022", "ndx-daily", "2022-01-01", "2023-01-01"),
    ),
}


def scenario_legs(name_or_path: str) -> tuple[Leg, ...]:
    """A named scenario, or one leg replaying a whole OHLCV file."""
    if name_or_path in SCENARIOS:
        return SCENARIOS[name_or_path]
    if Path(name_or_path).is_file():
        return (Leg(Path(name_or_path).stem, name_or_path, warmup_bars=0),)
    known = ", ".join(SCENARIOS)
    raise DataError(f"unknown scenario or file {name_or_path!r} (scenarios: {known}; or an OHLCV file)")


def _ms(date: str | None) -> int | None:
    return None if date is None else int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp() * 1000)


def leg_bars(leg: Leg) -> tuple[BarSeries, Instrument, int]:
    """The leg's bars including warm-up, and the index where the crash window starts."""
    series, instrument = resolve_bars(leg.data)
    start, end = _ms(leg.start), _ms(leg.end)
    window_start = 0 if start is None else int(np.searchsorted(series.ts, start))
    first = max(0, window_start - leg.warmup_bars)
    stop = len(series) if end is None else int(np.searchsorted(series.ts, end))
    bars = series.take(slice(first, stop))
    if len(bars) - (window_start - first) < 2:
        raise DataError(f"{leg.data}: fewer than 2 bars in {leg.start}..{leg.end}")
    return bars, instrument, window_start - first


@dataclass
class RunSummary:
    max_drawdown: float
    final_positions: dict[str, str]
    final_position_qty: float
    guard_liquidations: int
    exchange_liquidations: int
    final_equity: float


@dataclass
class LegReport:
    name: str
    data: str
    start: str
    end: str
    bars: int
    guard: RunSummary
    no_guard: RunSummary
    fired_at: str | None
    var_pct_at_fire: float | None
    first_var_breach: str | None
    max_var_pct: float | None
    liquidation_fills: list[dict[str, object]]
    warnings: list[str]
    events: list[dict[str, object]]
    ts: np.ndarray = field(repr=False)
    close: np.ndarray = field(repr=False)
    equity_guard: np.ndarray = field(repr=False)
    equity_no_guard: np.ndarray = field(repr=False)
    var_pct: np.ndarray = field(repr=False)
    position_guard: np.ndarray = field(repr=False)


def _iso(ts: int) -> str:
    text = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return text.removesuffix(" 00:00")


def _summary(result: BacktestResult, guard: RiskGuard | None, window: int) -> RunSummary:
    final = {s: result.positions[s][-1] for s in result.positions}
    return RunSummary(
        max_drawdown=max(0.0, float(-drawdown_series(result.equity[window:]).min())),
        final_positions={s: str(Decimal(repr(float(q)))) for s, q in final.items()},
        final_position_qty=float(sum(abs(q) for q in final.values())),
        guard_liquidations=guard.liquidations if guard is not None else 0,
        exchange_liquidations=result.liquidations,
        final_equity=float(result.equity[-1]),
    )


def run_leg(
    leg: Leg,
    make_strategy: Callable[[Leg], Strategy],
    cash: Decimal,
    leverage: Decimal,
    guard_config: GuardConfig,
) -> LegReport:
    """Replay one leg twice — guard on, guard off (VaR still measured) — with the same strategy
    (`make_strategy(leg)` builds a fresh one per run)."""
    bars, instrument, window = leg_bars(leg)
    config = SimConfig(leverage=leverage)
    guard = RiskGuard(guard_config)
    on = BacktestRunner(make_strategy(leg), [(bars, instrument)], cash, config, risk=guard).run()
    watcher = RiskGuard(GuardConfig(model=guard_config.model, var_limit=None))
    off = BacktestRunner(make_strategy(leg), [(bars, instrument)], cash, config, risk=watcher).run()
    var = guard.var_path(on.positions)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_pct = np.where(on.equity > 0, var / on.equity, np.nan)
    limit = guard_config.var_limit
    breach = np.flatnonzero(var_pct > limit) if limit is not None else np.empty(0, int)
    fire = next((e for e in guard.events if e.kind == "var_liquidation"), None)
    holding = np.any([q != 0 for q in on.positions.values()], axis=0)
    known = holding & np.isfinite(var_pct)
    warnings = [
        f"order rejected at {_iso(o.created_ts)}: {o.reject_reason}"
        for o in on.orders
        if o.status is OrderStatus.REJECTED and o.trade_id not in guard.liquidation_ids
    ][:5]
    if not holding.any():
        warnings.append("no position was ever open: nothing was stress-tested")
    unknown = int((holding & ~np.isfinite(var_pct)).sum())
    if unknown:
        warnings.append(
            f"VaR unknown on {unknown} bar(s) with a position open "
            f"(under {guard.config.model.min_bars} bars of history)"
        )
    liquidation_fills = [
        {"time": _iso(f.ts), "side": str(f.side), "qty": str(f.qty), "price": str(f.price), "fee": str(f.fee)}
        for f in on.fills
        if f.trade_id in guard.liquidation_ids
    ]
    return LegReport(
        name=leg.name,
        data=leg.data,
        start=_iso(int(bars.ts[window])),
        end=_iso(int(bars.ts[-1])),
        bars=len(bars) - window,
        guard=_summary(on, guard, window),
        no_guard=_summary(off, None, window),
        fired_at=_iso(fire.ts) if fire else None,
        var_pct_at_fire=fire.var / fire.equity if fire else None,
        first_var_breach=_iso(int(bars.ts[breach[0]])) if len(breach) else None,
        max_var_pct=float(np.max(var_pct[known])) if known.any() else None,
        liquidation_fills=liquidation_fills,
        warnings=warnings,
        events=[{"time": _iso(e.ts), "kind": e.kind, "detail": e.detail} for e in guard.events],
        ts=bars.ts,
        close=bars.close,
        equity_guard=on.equity,
        equity_no_guard=off.equity,
        var_pct=var_pct,
        position_guard=next(iter(on.positions.values())),
    )


def report_json(scenario: str, strategy: str, leverage: Decimal, legs: list[LegReport]) -> dict[str, object]:
    """One JSON-ready object: per-leg details and the totals scripts check."""
    return {
        "scenario": scenario,
        "strategy": strategy,
        "leverage": str(leverage),
        "final_position_qty": sum(leg.guard.final_position_qty for leg in legs),
        "liquidations": sum(leg.guard.guard_liquidations for leg in legs),
        "max_drawdown_with_guard": max(leg.guard.max_drawdown for leg in legs),
        "max_drawdown_without_guard": max(leg.no_guard.max_drawdown for leg in legs),
        "legs": [
            {
                "name": leg.name,
                "data": leg.data,
                "start": leg.start,
                "end": leg.end,
                "bars": leg.bars,
                "guard_fired_at": leg.fired_at,
                "var_pct_at_fire": leg.var_pct_at_fire,
                "first_var_breach": leg.first_var_breach,
                "max_var_pct": leg.max_var_pct,
                "liquidation_fills": leg.liquidation_fills,
                "warnings": leg.warnings,
                "events": leg.events,
                "with_guard": vars(leg.guard),
                "without_guard": vars(leg.no_guard),
            }
            for leg in legs
        ],
    }


def write_leg_outputs(leg: LegReport, out_dir: Path) -> dict[str, Path]:
    """`<leg>.csv` (per-bar equity with and without the guard, VaR %) and `<leg>.png`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{leg.name}.csv"
    with csv_path.open("w") as fh:
        fh.write("time,close,equity_with_guard,equity_without_guard,var_pct_of_equity,position_with_guard\n")
        for row in zip(
            leg.ts,
            leg.close,
            leg.equity_guard,
            leg.equity_no_guard,
            leg.var_pct,
            leg.position_guard,
            strict=True,
        ):
            t, c, eg, en, v, p = row
            fh.write(f"{_iso(int(t))},{c},{eg},{en},{'' if np.isnan(v) else v},{p}\n")
    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    days = (leg.ts - leg.ts[0]) / DAY_MS
    top.plot(days, leg.equity_no_guard, label="without guard", color="tab:red")
    top.plot(days, leg.equity_guard, label="with guard", color="tab:blue")
    top.set_ylabel("equity (USDT)")
    top.legend()
    top.set_title(f"{leg.name}: {leg.start} .. {leg.end}")
    bottom.plot(days, leg.var_pct * 100, color="tab:purple")
    bottom.set_ylabel("VaR % equity")
    bottom.set_xlabel("days from first bar")
    png_path = out_dir / f"{leg.name}.png"
    fig.savefig(png_path, dpi=100, bbox_inches="tight")
    return {"csv": csv_path, "png": png_path}
