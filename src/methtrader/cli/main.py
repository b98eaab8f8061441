"""The `methtrader` command line. Every command exits 2 with a one-line reason on bad input."""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from methtrader.cli import audit, control, db, logs, model, risk, sim
from methtrader.cli import run as run_command
from methtrader.cli.backtest import BacktestOptions, run_backtest_command
from methtrader.cli.errors import UserError, fail

app = typer.Typer(
    name="methtrader",
    help="Auditable algorithmic trading for Bybit: backtest, paper and live with one engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.add_typer(risk.app, name="risk")
app.add_typer(logs.app, name="logs")
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(model.app, name="model")
control.register(app)
run_command.register(app)
sim.register(app)


@app.callback()
def main(ctx: typer.Context) -> None:
    """methtrader — see `methtrader COMMAND --help`."""
    if ctx.invoked_subcommand != "run":  # `run` sets up its own logging; the rest keep stdout for output
        from methtrader.ops.logs import configure_logging

        configure_logging(ctx.invoked_subcommand or "cli", level="WARNING")


@app.command()
def backtest(
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="Dataset name or OHLCV file (CSV/Parquet); repeat for a basket."),
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="Built-in name or path/to/file.py:ClassName.")
    ] = "sma_cross",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v; repeatable.")
    ] = None,
    cash: Annotated[str, typer.Option(help="Starting USDT balance.")] = "10000",
    fee_taker: Annotated[str | None, typer.Option(help="Taker fee rate (default: instrument's).")] = None,
    fee_maker: Annotated[str | None, typer.Option(help="Maker fee rate (default: instrument's).")] = None,
    slippage: Annotated[float, typer.Option(help="Slippage on taker fills as a fraction of price.")] = 0.0,
    leverage: Annotated[str, typer.Option(help="Account leverage (cross margin).")] = "1",
    funding_rate: Annotated[str, typer.Option(help="Funding rate per 8 hours.")] = "0.0001",
    volume_share: Annotated[
        float | None, typer.Option(help="Cap each fill at this share of the bar's volume.")
    ] = None,
    guard: Annotated[
        bool,
        typer.Option("--guard/--no-guard", help="Run the risk guard (VaR liquidation) as live trading does."),
    ] = True,
    var_limit: Annotated[
        float, typer.Option(help="Guard: liquidate above this VaR(99%, 1 day) share of equity.")
    ] = 0.05,
    resample: Annotated[
        str | None, typer.Option(help="Aggregate bars first, e.g. 4h or 1d (UTC-aligned).")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="First bar time (ISO date, UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Stop before this time (ISO date, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object.")] = False,
    out: Annotated[
        str | None, typer.Option(help="Write trades, fills, equity CSVs and the HTML/PNG report here.")
    ] = None,
) -> None:
    """Run a strategy over historical bars and report its performance."""
    options = BacktestOptions(
        data=data or ["btcusdt-1h-2019-2020"],
        strategy=strategy,
        params=param or [],
        cash=cash,
        fee_taker=fee_taker,
        fee_maker=fee_maker,
        slippage=slippage,
        leverage=leverage,
        funding_rate=funding_rate,
        volume_share=volume_share,
        start=start,
        end=end,
        out=out,
        resample=resample,
        guard=guard,
        var_limit=var_limit,
    )
    try:
        stats, paths = run_backtest_command(options, show_progress=not as_json)
    except UserError as exc:
        fail(str(exc))
    if as_json:
        payload = json.loads(_stats_json(stats))
        if paths:
            payload["outputs"] = {k: str(v) for k, v in paths.items()}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    console = Console()
    _print_report(stats, console)
    for name, path in paths.items():
        console.print(f"{name:>7}: {path}", highlight=False)


def _stats_json(stats: dict[str, object]) -> str:
    from methtrader.report import stats_to_json

    return stats_to_json(stats)


def _print_report(stats: dict[str, object], console: Console) -> None:
    from methtrader.report import print_report

    print_report(stats, console)


if __name__ == "__main__":
    app()
