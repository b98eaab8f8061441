"""`methtrader backtest`: turn command-line options into a run, a report and output files."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from methtrader.cli.errors import UserError
from methtrader.cli.progress import LazyProgress
from methtrader.data import DataError, resample, resolve_bars
from methtrader.engine.backtest import BacktestRunner
from methtrader.exchange.sim.matching import SimConfig
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.model import BarSeries, Instrument
from methtrader.risk.guard import GuardConfig, RiskGuard
from methtrader.strategies import StrategyError, build_strategy

MAX_INPUT = Decimal(10) ** 15  # beyond any real account: a typo, and floats would turn it to inf


@dataclass
class BacktestOptions:
    data: list[str]
    strategy: str = "sma_cross"
    params: list[str] = field(default_factory=list)
    cash: str = "10000"
    fee_taker: str | None = None
    fee_maker: str | None = None
    slippage: float = 0.0
    leverage: str = "1"
    funding_rate: str = "0.0001"
    volume_share: float | None = None
    start: str | None = None
    end: str | None = None
    out: str | None = None
    resample: str | None = None
    guard: bool = True
    var_limit: float = 0.05


def parse_decimal(name: str, text: str, minimum: Decimal | None = None) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UserError(f"--{name} {text!r} is not a number") from None
    if not value.is_finite() or abs(value) > MAX_INPUT:
        raise UserError(f"--{name} must be a finite number below {MAX_INPUT:,}, got {text}")
    if minimum is not None and value < minimum:
        raise UserError(f"--{name} must be a number >= {minimum}, got {text}")
    return value


def parse_time(name: str, text: str | None) -> int | None:
    """ISO date or datetime (UTC unless it says otherwise) → Unix ms."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--{name} {text!r} is not an ISO date like 2020-03-01") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {pair!r} must look like name=value")
        params[key.strip()] = value.strip()
    return params


def load_data(
    specs: list[str], start: int | None, end: int | None, rule: str | None = None
) -> list[tuple[BarSeries, Instrument]]:
    data = []
    for spec in specs:
        try:
            series, instrument = resolve_bars(spec)
            if rule is not None:
                series = resample(series, rule)
        except DataError as exc:
            raise UserError(str(exc)) from None
        except ValueError as exc:  # an unknown or impossible resampling rule
            raise UserError(f"--resample {rule}: {exc}") from None
        window = series.between(start, end)
        if len(window) < 2:
            raise UserError(f"{spec}: fewer than 2 bars between --from and --to")
        data.append((window, instrument))
    if len({s.symbol for s, _ in data}) != len(data):
        raise UserError("the same symbol was given twice with --data")
    return data


def sim_config(options: BacktestOptions) -> SimConfig:
    if not 0 <= options.slippage < 1:
        raise UserError(f"--slippage must be a fraction in [0, 1), got {options.slippage}")
    if options.volume_share is not None and not 0 < options.volume_share <= 1:
        raise UserError(f"--volume-share must be in (0, 1], got {options.volume_share}")
    return SimConfig(
        leverage=parse_decimal("leverage", options.leverage, Decimal(0)),
        fee_taker=None
        if options.fee_taker is None
        else parse_decimal("fee-taker", options.fee_taker, Decimal(0)),
        fee_maker=None if options.fee_maker is None else parse_decimal("fee-maker", options.fee_maker),
        slippage=FixedSlippage(options.slippage),
        max_volume_share=options.volume_share,
        funding_rate=parse_decimal("funding-rate", options.funding_rate),
    )


def run_backtest_command(
    options: BacktestOptions, show_progress: bool = True
) -> tuple[dict, dict[str, Path]]:
    """Validate everything first (nothing runs on bad input), then run and write outputs."""
    from methtrader.report import compute_stats, write_outputs

    try:
        strategy = build_strategy(options.strategy, parse_params(options.params))
    except StrategyError as exc:
        raise UserError(str(exc)) from None
    cash = parse_decimal("cash", options.cash, Decimal(0))
    if cash <= 0:
        raise UserError("--cash must be positive")
    config = sim_config(options)
    data = load_data(
        options.data, parse_time("from", options.start), parse_time("to", options.end), options.resample
    )
    if not 0 < options.var_limit < 1:
        raise UserError(f"--var-limit must be a fraction in (0, 1), got {options.var_limit}")
    guard = RiskGuard(GuardConfig(var_limit=options.var_limit)) if options.guard else None
    with LazyProgress(f"backtest {strategy.label}", enabled=show_progress) as progress:
        try:
            runner = BacktestRunner(strategy, data, cash, config, risk=guard, progress=progress)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        result = runner.run()
    stats = compute_stats(result)
    if guard is not None:
        stats["guard_state"] = guard.state.state.name + (
            f" ({guard.state.reason})" if guard.state.reason else ""
        )
        stats["guard_liquidations"] = guard.liquidations
        stats["orders_denied"] = len(guard.denied)
    else:
        stats["guard_state"] = "off"
    stats["data"] = ",".join(options.data)
    paths = write_outputs(result, stats, Path(options.out)) if options.out else {}
    return stats, paths
