"""`methtrader risk stress|var`: crash-scenario replays and side-by-side VaR of a position file."""

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from methtrader.cli.backtest import parse_decimal, parse_params
from methtrader.cli.errors import UserError, fail_on_user_error
from methtrader.data import DataError
from methtrader.risk.guard import GuardConfig
from methtrader.risk.position_file import Book
from methtrader.strategies import Strategy, StrategyError, load_strategy_class

app = typer.Typer(help="Risk: crash scenarios and Value-at-Risk.", no_args_is_help=True)


def _fraction(name: str, value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise UserError(f"--{name} must be a fraction in (0, 1), got {value}")
    return value


@app.command()
@fail_on_user_error
def stress(
    scenario: Annotated[str, typer.Option(help="gfc-2008, covid-2020, crypto-2022 or an OHLCV file.")],
    strategy: Annotated[str, typer.Option(help="Strategy name or FILE.py:CLASS.")] = "hold",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v.")] = None,
    leverage: Annotated[str, typer.Option(help="Account leverage.")] = "1",
    exposure: Annotated[
        str, typer.Option(help="`hold` buys this share of cash × leverage when the crash window opens.")
    ] = "0.9",
    cash: Annotated[str, typer.Option(help="Starting USDT balance of each leg.")] = "10000",
    var_limit: Annotated[
        float, typer.Option(help="Liquidate when VaR(99%, 1 day) exceeds this share of equity.")
    ] = 0.05,
    drawdown_halt: Annotated[float | None, typer.Option(help="Also HALT beyond this drawdown.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out: Annotated[str | None, typer.Option(help="Write per-leg CSVs and equity charts here.")] = None,
) -> None:
    """Replay a crash with the guard on and off: VaR path, when it fired, what it saved."""
    from methtrader.risk.scenarios import Leg, report_json, run_leg, scenario_legs, write_leg_outputs

    lev = parse_decimal("leverage", leverage, Decimal(0))
    money = parse_decimal("cash", cash, Decimal(0))
    if lev <= 0 or money <= 0:
        raise UserError("--leverage and --cash must be positive")
    config = GuardConfig(
        var_limit=_fraction("var-limit", var_limit), drawdown_halt=_fraction("drawdown-halt", drawdown_halt)
    )
    params = parse_params(param or [])
    try:
        legs = scenario_legs(scenario)
        cls = load_strategy_class(strategy)
        if cls.name == "hold" and "notional" not in params:
            params["notional"] = str(money * lev * parse_decimal("exposure", exposure, Decimal(0)))
        cls(**params)  # validate once, before any work

        def make(leg: Leg) -> Strategy:  # a fresh strategy per run; `hold` enters as the crash begins
            if cls.name == "hold" and "start" not in params and leg.start:
                return cls(**params, start=leg.start)
            return cls(**params)

        reports = [run_leg(leg, make, money, lev, config) for leg in legs]
    except (DataError, StrategyError, ValueError) as exc:
        raise UserError(str(exc)) from None
    payload = report_json(scenario, cls.name or cls.__name__, lev, reports)
    if out:
        payload["outputs"] = {
            leg.name: {k: str(v) for k, v in write_leg_outputs(leg, Path(out)).items()} for leg in reports
        }
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    _print_stress(payload)


def _print_stress(payload: dict) -> None:
    console = Console()
    table = Table(
        title=f"Stress {payload['scenario']} — {payload['strategy']}, leverage {payload['leverage']}"
    )
    for column in (
        "leg",
        "window",
        "guard fired",
        "VaR % at fire",
        "max DD with",
        "max DD without",
        "final qty",
    ):
        table.add_column(column, justify="right" if column != "leg" else "left")
    for leg in payload["legs"]:
        at_fire = leg["var_pct_at_fire"]
        table.add_row(
            leg["name"],
            f"{leg['start']} .. {leg['end']}",
            leg["guard_fired_at"] or "—",
            f"{at_fire:.2%}" if at_fire is not None else "—",
            f"{leg['with_guard']['max_drawdown']:.2%}",
            f"{leg['without_guard']['max_drawdown']:.2%}",
            f"{leg['with_guard']['final_position_qty']:g}",
        )
    console.print(table)
    for leg in payload["legs"]:
        for warning in leg["warnings"]:
            console.print(f"[yellow]warning[/] {leg['name']}: {warning}", highlight=False)
    console.print(
        f"liquidations by the guard: {payload['liquidations']}; "
        f"positions left: {payload['final_position_qty']:g}",
        highlight=False,
    )
    for name, paths in payload.get("outputs", {}).items():
        console.print(f"{name}: {paths['png']}  {paths['csv']}", highlight=False)


@app.command("var")
@fail_on_user_error
def var_command(
    positions: Annotated[
        Path | None, typer.Argument(help="JSON: {equity, positions: [{symbol, qty, data}]}.")
    ] = None,
    account: Annotated[
        bool, typer.Option("--account", help="The running account on the exchange instead of a file.")
    ] = False,
    network: Annotated[str, typer.Option(help="--account: testnet, demo, mainnet or sim.")] = "testnet",
    sim_url: Annotated[str | None, typer.Option(help="--account on sim: the simulator's URL.")] = None,
    interval: Annotated[str, typer.Option(help="--account: kline interval of the history.")] = "1h",
    confidence: Annotated[float, typer.Option(help="Confidence level.")] = 0.99,
    horizon: Annotated[int, typer.Option(help="Horizon in bars of the data.")] = 1,
    window: Annotated[int, typer.Option(help="Bars of history to use.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """VaR and ES of a position file or of the running account, every method side by side."""
    from methtrader.risk.position_file import load_positions, var_report

    if window < 1 or horizon < 1:
        raise UserError(f"--window and --horizon must be >= 1, got {window} and {horizon}")
    if (positions is None) == (not account):
        raise UserError("give a position file or --account, not both")
    try:
        book = (
            load_positions(positions) if positions is not None else _account_book(network, sim_url, interval)
        )
        rows = var_report(book, confidence, horizon, window) if book.positions else []
    except (DataError, ValueError) as exc:
        raise UserError(str(exc)) from None
    held = [{"symbol": symbol, "qty": qty} for symbol, qty, _ in book.positions]
    if as_json:
        payload = {"equity": book.equity, "confidence": confidence, "horizon": horizon, "positions": held}
        sys.stdout.write(json.dumps({**payload, "methods": rows}) + "\n")
        return
    if not rows:
        Console().print(f"no open position: VaR and ES are 0 (equity {book.equity:,.2f})", highlight=False)
        return
    table = Table(title=f"VaR / ES at {confidence:.1%}, {horizon} bar(s), equity {book.equity:,.2f}")
    for column in ("method", "VaR", "ES", "VaR % equity", "ES % equity"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for row in rows:
        table.add_row(
            str(row["method"]),
            f"{row['var']:,.2f}",
            f"{row['es']:,.2f}",
            f"{row['var_pct_equity']:.2f}%",
            f"{row['es_pct_equity']:.2f}%",
        )
    Console().print(table)


def _account_book(network: str, sim_url: str | None, interval: str) -> "Book":
    """Positions, equity and klines of the account behind METHTRADER_API_KEY/SECRET(_FILE)."""
    import asyncio

    from ccxt.base.errors import AuthenticationError, BaseError

    from methtrader.cli.run import account_adapter
    from methtrader.risk.position_file import account_book

    if network not in ("testnet", "demo", "mainnet", "sim"):
        raise UserError(f"--network must be testnet, demo, mainnet or sim, got {network!r}")
    if network == "sim" and not sim_url:
        raise UserError("--network sim needs --sim-url (the URL `methtrader sim serve` prints)")
    adapter = account_adapter(network, sim_url, "--account")

    async def fetch() -> "Book":
        try:
            await adapter.load_markets()
            return await account_book(adapter, interval)
        finally:
            await adapter.close()

    try:
        return asyncio.run(fetch())
    except AuthenticationError:
        raise UserError(f"{network}: the API key was refused (wrong key, secret or permissions)") from None
    except BaseError as exc:
        raise UserError(f"{network}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
