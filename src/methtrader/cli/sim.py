"""`methtrader sim serve` and `methtrader sim add-key`: a local exchange speaking Bybit V5.

Point ccxt, ccxt.pro or pybit at http://HOST:PORT (REST) and ws://HOST:PORT/v5/public/linear,
ws://HOST:PORT/v5/private (streams) with a key from `sim add-key`. Bad input exits 2 with one line
`error: ...` on stderr.
"""

import json
import math
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from methtrader.cli.errors import fail

DEFAULT_DATA = "btcusdt-1h-2019-2020"
DEFAULT_STATE_DIR = Path("var/sim")

sim_app = typer.Typer(
    name="sim",
    help="A local simulated exchange speaking Bybit's V5 API (REST and WebSocket).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StateDirOpt = Annotated[Path, typer.Option(help="Directory holding the simulator's API keys (keys.json).")]


@sim_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    data: Annotated[
        str, typer.Option(help="Dataset name or OHLCV file (CSV/Parquet) to replay.")
    ] = DEFAULT_DATA,
    speed: Annotated[float, typer.Option(help="Replay speed as a multiple of real time (0: frozen).")] = 60.0,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    cash: Annotated[str, typer.Option(help="Starting USDT balance of every new account.")] = "100000",
    history: Annotated[int, typer.Option(help="Bars already visible when the replay starts.")] = 500,
    volume_share: Annotated[
        float | None, typer.Option(help="Fill at most this share of a bar's volume (partial fills).")
    ] = None,
) -> None:
    """Serve the simulator until interrupted (Ctrl-C)."""
    if not 0 < port < 65536:
        fail(f"--port must be between 1 and 65535, got {port}")
    if not math.isfinite(speed) or speed < 0:
        fail(f"--speed must be a finite number >= 0, got {speed}")
    if history < 0:
        fail(f"--history must be >= 0, got {history}")
    if volume_share is not None and not 0 < volume_share <= 1:
        fail(f"--volume-share must be in (0, 1], got {volume_share}")
    try:
        starting_cash = Decimal(cash)
    except InvalidOperation:
        fail(f"--cash must be a number, got {cash!r}")
    if not starting_cash.is_finite() or starting_cash <= 0:
        fail(f"--cash must be positive, got {cash}")
    if state_dir.exists() and not state_dir.is_dir():
        fail(f"--state-dir {state_dir} is not a directory")

    import uvicorn

    from methtrader.data import DataError, resolve_bars
    from methtrader.exchange.sim.matching import SimConfig
    from methtrader.exchange.sim.server import create_app
    from methtrader.exchange.sim.venue import SimExchange

    try:
        series, instrument = resolve_bars(data)
        exchange = SimExchange(
            series,
            instrument,
            state_dir=state_dir,
            cash=starting_cash,
            speed=speed,
            history=history,
            config=SimConfig(max_volume_share=volume_share),
        )
    except (DataError, ValueError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    sys.stderr.write(
        f"methtrader sim: {instrument.symbol} from {data} at {speed:g}x on http://{host}:{port} "
        f"(ws://{host}:{port}/v5/public/linear, /v5/private); keys in {state_dir}; "
        f"instance {exchange.instance_id}\n"
    )
    try:
        uvicorn.run(create_app(exchange), host=host, port=port, log_level="warning", ws="websockets-sansio")
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@sim_app.command("add-key")
def add_key_command(
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key for a new simulated account (a running server picks it up at once)."""
    from methtrader.exchange.sim.keys import add_key

    if state_dir.exists() and not state_dir.is_dir():
        fail(f"--state-dir {state_dir} is not a directory")
    try:
        api_key, api_secret, uid = add_key(state_dir)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps({"api_key": api_key, "api_secret": api_secret, "uid": uid}) + "\n")
        return
    sys.stdout.write(f"api_key:    {api_key}\napi_secret: {api_secret}\nuid:        {uid}\n")


def register(app: typer.Typer) -> None:
    """Add the `sim` sub-app (serve, add-key) to ``app``."""
    app.add_typer(sim_app, name="sim")


if __name__ == "__main__":
    sim_app()
