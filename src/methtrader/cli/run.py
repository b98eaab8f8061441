"""`methtrader run`: the main job. Paper mode (the default) starts the Bybit-compatible simulator
in-process, replaying shipped hourly BTCUSDT bars at an accelerated speed, and trades it through
the real ccxt adapter over loopback, with a live terminal view, Prometheus `/metrics`, `/healthz`
and `/readyz`, and the emergency brake of the account (Redis or `var/`) obeyed between bars."""

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, TextIO

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.live import Live
from rich.table import Table

from methtrader.audit import rows
from methtrader.cli.backtest import parse_decimal, parse_params
from methtrader.cli.errors import UserError, fail_on_user_error
from methtrader.data import DataError, resolve_bars
from methtrader.engine.live import LiveRunner, LiveStatus
from methtrader.engine.recorder import LedgerRecorder
from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
from methtrader.exchange.bybit.governor import RateGovernor
from methtrader.exchange.bybit.monitor import RateLimitMonitor
from methtrader.exchange.sim.runner import AppServer
from methtrader.ml.blobs import BlobStore
from methtrader.model import Instrument
from methtrader.ops.alerts import SlackNotifier, guard_event_alert
from methtrader.ops.build import build_info
from methtrader.ops.health import Readiness
from methtrader.ops.logs import configure_logging, get_logger, register_secret
from methtrader.ops.metrics import Metrics
from methtrader.risk.control import ControlError, control_from_settings, now_ms
from methtrader.risk.guard import GuardConfig, GuardEvent, RiskGuard
from methtrader.store.database import Database, DatabaseError, describe
from methtrader.strategies import Strategy, StrategyError, build_strategy
from methtrader.web.ops import create_ops_app


def secret(name: str) -> str:
    """`NAME` from the environment, or the contents of the file named by `NAME_FILE`."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise UserError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
    return os.environ.get(name, "").strip()


def database_url() -> str | None:
    """METHTRADER_DATABASE_URL, with the password from METHTRADER_DATABASE_PASSWORD(_FILE) when
    set (a container secret); both are registered so no log line can show them."""
    url = os.environ.get("METHTRADER_DATABASE_URL", "").strip()
    if not url:
        return None
    password = secret("METHTRADER_DATABASE_PASSWORD")
    register_secret(password or None)
    if password:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        except ArgumentError:
            raise UserError("METHTRADER_DATABASE_URL is not a database URL") from None
    register_secret(url)
    return url


def view(status: LiveStatus, guard: RiskGuard, mode: str) -> Table:
    table = Table(title=f"methtrader {mode}", show_header=False, min_width=48)
    table.add_column(style="bold")
    table.add_column(justify="right")
    worst = max(status.utilisation.values(), default=0.0)
    rows = [
        ("connection", ("up" if status.connected else "[red]DOWN[/]") + f" ({status.reconnects} reconnects)"),
        ("bars", f"{status.bars:,}"),
        ("price", f"{status.last_price:,.2f}"),
        ("position", str(status.position)),
        ("equity", f"{status.equity:,.2f}"),
        ("drawdown", f"{status.drawdown:.2%}"),
        ("fills", f"{status.fills:,}"),
        ("risk guard", guard.state.state.name),
        ("VaR 99% 1d", f"{guard.last_var:,.2f}"),
        ("rate limit (worst endpoint)", f"{worst:.0%}"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    for error in status.errors[-2:]:
        table.add_row("[red]error[/]", error[:60])
    return table


log = get_logger("run")


def _log_file(path: Path = Path("var/logs/run.jsonl")) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", buffering=1, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the log file {path}: {exc.strerror}") from None


def _on_guard_event(
    notifier: SlackNotifier, recorder: LedgerRecorder, guard: RiskGuard, event: GuardEvent
) -> None:
    change = guard.state.history[-1] if guard.state.history else None
    recorder.guard_change(
        change.old.name if change is not None else "",
        guard.state.state.name,
        f"{event.kind}: {event.detail}",
        guard.snapshot(),
    )  # stamped with the wall clock, and the last bar's time in its own column
    log.warning(
        "risk guard event",
        kind=event.kind,
        detail=event.detail,
        var=None if event.var != event.var else round(event.var, 2),
        equity=None if event.equity != event.equity else round(event.equity, 2),
    )
    guard_event_alert(notifier, event.kind, event.detail)


def _on_ledger_incident(notifier: SlackNotifier, guard: RiskGuard, text: str) -> None:
    """A fill the ledger cannot store as reported (its id is another execution's): no new exposure
    until a person has looked, and they hear of it now."""
    guard.unknown_state(f"ledger incident: {text}", now_ms())
    notifier.incident(text, key="ledger-fill-collision")


def _open_ledger(
    url: str | None, account: str, mode: str, guard: RiskGuard, metrics: Metrics, notifier: SlackNotifier
) -> LedgerRecorder:
    """The ledger (SQLite under var/ by default), migrated; unreachable, the session starts on the
    journal with new exposure blocked, and replays it once the database answers."""
    try:
        db = Database.from_url(url, background_checkpoints=True)  # see _keep_ledger
    except DatabaseError as exc:
        raise UserError(f"ledger database: {exc}") from None

    def backlog(size: int, database_up: bool) -> None:
        metrics.journal_backlog.set(size)
        metrics.db_up.set(1 if database_up else 0)

    recorder = LedgerRecorder(
        db,
        Path("var/journal") / f"{account}.jsonl",
        mode=mode,
        on_outage=lambda reason: guard.unknown_state(f"database: {reason}"),
        on_recovered=lambda: guard.clear_unknown_state("database back, journal replayed", now_ms()),
        observe_write=metrics.db_write_latency.observe,
        observe_backlog=backlog,
        audit=rows.seal,
        on_incident=lambda text: _on_ledger_incident(notifier, guard, text),
    )
    guard.on_event = lambda event: _on_guard_event(notifier, recorder, guard, event)
    guard.on_command = lambda c: recorder.control_action(account, c.seq, c.action, c.who, c.reason, c.at_ms)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-step INFO lines say nothing here
    try:
        db.upgrade()
    except Exception as exc:
        recorder.outage = recorder.outage or f"cannot migrate: {describe(exc)}"
    if recorder.outage:
        guard.unknown_state(f"database: {recorder.outage}", now_ms())
        log.error("ledger unavailable at start: journaling", detail=recorder.outage, backlog=recorder.backlog)
    else:
        recorder.replay()
    backlog(recorder.backlog, recorder.outage is None)
    return recorder


async def _keep_ledger(recorder: LedgerRecorder, every_s: float = 1.0) -> None:
    """Probe the ledger (in a thread, never blocking trading): an outage is noticed between writes,
    and the journal is replayed once the database answers again. SQLite's write-ahead log is
    checkpointed here too, off the order path."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(recorder.db.ping)
            await asyncio.to_thread(recorder.db.checkpoint, "PASSIVE")
        except DatabaseError as exc:
            recorder.mark_outage(str(exc))
            continue
        if recorder.outage is not None:
            recorder.replay()


def register(app: typer.Typer) -> None:
    """Add the `run` command to the application."""

    @app.command()
    @fail_on_user_error
    def run(
        mode: Annotated[str, typer.Option(help="paper (local simulator) or live (Bybit).")] = "paper",
        strategy: Annotated[str, typer.Option("--strategy", "-s")] = "sma_cross",
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v.")
        ] = None,
        data: Annotated[
            str, typer.Option(help="Paper: the dataset the simulator replays.")
        ] = "btcusdt-1h-2019-2020",
        speed: Annotated[
            float, typer.Option(help="Paper: replay speed (3600 = one hourly bar per second).")
        ] = 3600,
        bars: Annotated[int, typer.Option(help="Stop after this many bars (0 = until Ctrl-C).")] = 0,
        cash: Annotated[str, typer.Option(help="Paper: starting USDT.")] = "10000",
        sim_url: Annotated[
            str | None,
            typer.Option(
                help="Paper: trade this running `methtrader sim serve` (keys from the environment)."
            ),
        ] = None,
        network: Annotated[str, typer.Option(help="Live: testnet, demo or mainnet.")] = "testnet",
        mainnet: Annotated[bool, typer.Option("--i-mean-mainnet", help="Required to trade mainnet.")] = False,
        metrics_port: Annotated[
            int, typer.Option(help="Serve /metrics, /healthz and /readyz on this port (0 = off).")
        ] = 9464,
        metrics_host: Annotated[
            str, typer.Option(envvar="METHTRADER_METRICS_HOST", help="Address of those endpoints.")
        ] = "127.0.0.1",
        account: Annotated[str, typer.Option(help="Account whose brake and resume this session obeys.")] = (
            "default"
        ),
        log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
        quiet: Annotated[bool, typer.Option(help="No live terminal view.")] = False,
        keep_orders: Annotated[bool, typer.Option(help="On stop, leave open orders working.")] = False,
    ) -> None:
        """Trade a strategy in paper (default) or live mode with the risk guard on."""
        if mode not in ("paper", "live"):
            raise UserError(f"--mode must be paper or live, got {mode!r}")
        if speed <= 0 or bars < 0:
            raise UserError("--speed must be positive and --bars >= 0")
        try:
            built = build_strategy(strategy, parse_params(param or []))
        except StrategyError as exc:
            raise UserError(str(exc)) from None
        money = parse_decimal("cash", cash, Decimal(0))
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise UserError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
        # JSON lines on stdout for a container or a pipe; beside the live view they go to a file
        logs_to_stdout = quiet or not sys.stdout.isatty()
        log_stream = sys.stdout if logs_to_stdout else _log_file()
        configure_logging("run", level=log_level.upper(), stream=log_stream)
        redis_url = os.environ.get("METHTRADER_REDIS_URL", "").strip() or None
        register_secret(redis_url)
        ledger_url = database_url()
        try:
            control = control_from_settings(redis_url, Path("var"), account)
        except (ControlError, ValueError) as exc:
            raise UserError(f"control channel: {exc}") from None
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        guard = RiskGuard(GuardConfig(), control=control, metrics=metrics.risk)
        notifier = SlackNotifier(secret("METHTRADER_SLACK_WEBHOOK_URL") or None, registry=registry)
        monitor = RateLimitMonitor(registry=registry, notifier=notifier)
        readiness = Readiness(guard, metrics, redis_url=redis_url)
        server = None
        if metrics_port:
            server = AppServer(create_ops_app(registry, readiness), metrics_host, metrics_port, "ops-http")
            try:
                server.start()
            except (OSError, RuntimeError) as exc:
                raise UserError(f"--metrics-port {metrics_port}: cannot serve ({exc})") from None
        recorder = _open_ledger(ledger_url, account, mode, guard, metrics, notifier)
        readiness.database = recorder.db
        session = Session(
            built,
            guard,
            RateGovernor(monitor=monitor),
            bars,
            quiet,
            keep_orders,
            metrics,
            readiness,
            recorder,
            notifier,
        )
        session.summary = Console(stderr=logs_to_stdout)
        log.info("session starting", mode=mode, strategy=strategy, bars=bars, account=account)
        try:
            if mode == "paper" and sim_url:
                asyncio.run(_exchange(session, "sim", sim_url))
            elif mode == "paper":
                asyncio.run(_paper(session, data, speed, money))
            else:
                asyncio.run(_live(session, network, mainnet))
        finally:
            recorder.close(checkpoint=True)
            monitor.close()
            notifier.close()
            control.close()
            if server is not None:
                server.stop()


@dataclass
class Session:
    """What every mode shares: the strategy, its guard, and how the session ends."""

    strategy: Strategy
    guard: RiskGuard
    governor: RateGovernor
    bars: int
    quiet: bool
    keep_orders: bool
    metrics: Metrics
    readiness: Readiness
    recorder: LedgerRecorder
    notifier: SlackNotifier
    summary: Console = field(default_factory=Console)  # the human summary (stderr when logs use stdout)


async def _paper(session: Session, data: str, speed: float, cash: Decimal) -> None:
    from methtrader.exchange.sim.runner import BackgroundServer
    from methtrader.exchange.sim.venue import SimExchange

    try:
        series, instrument = resolve_bars(data)
    except DataError as exc:
        raise UserError(str(exc)) from None
    exchange = SimExchange(series, instrument, state_dir=Path("var/sim-paper"), speed=speed, cash=cash)
    with BackgroundServer(exchange) as server:
        key, api_secret, _ = exchange.add_key()
        venue = VenueSettings(network="sim", sim_url=server.url)
        await _trade(
            session, BybitAdapter(make_client(venue, key, api_secret), venue), instrument, cash, "paper"
        )


async def _live(session: Session, network: str, mainnet: bool) -> None:
    if network not in ("testnet", "demo", "mainnet"):
        raise UserError(f"--network must be testnet, demo or mainnet, got {network!r}")
    if network == "mainnet" and not mainnet:
        raise UserError("mainnet trades real money: add --i-mean-mainnet to confirm")
    await _exchange(session, network)


async def _exchange(session: Session, network: str, sim_url: str | None = None) -> None:
    """Trade an account that lives on an exchange (Bybit, or a simulator that outlives this
    process): its keys come from the environment, its cash from its balance."""
    from methtrader.model.instrument import BTCUSDT

    label = f"paper {sim_url}" if sim_url else f"live {network}"
    await _trade(session, account_adapter(network, sim_url, network), BTCUSDT, None, label)


def account_adapter(network: str, sim_url: str | None, needed_by: str) -> BybitAdapter:
    """An adapter on the account behind METHTRADER_API_KEY/SECRET (or their *_FILE); the secret is
    registered so no log line shows it. `needed_by` names what asks, for the error."""
    key, api_secret = secret("METHTRADER_API_KEY"), secret("METHTRADER_API_SECRET")
    if not key or not api_secret:
        raise UserError(f"{needed_by} needs METHTRADER_API_KEY and METHTRADER_API_SECRET (or their *_FILE)")
    register_secret(api_secret)
    try:
        venue = VenueSettings(network=network, sim_url=sim_url)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return BybitAdapter(make_client(venue, key, api_secret), venue)


async def _trade(
    session: Session, adapter: BybitAdapter, instrument: Instrument, cash: Decimal | None, label: str
) -> None:
    if cash is None:
        balance = await adapter.fetch_balance()
        cash = Decimal(str(balance.get("USDT", {}).get("total") or 0))
    guard = session.guard
    console = session.summary
    live = None if session.quiet else Live(console=console, refresh_per_second=4)
    runner = LiveRunner(
        session.strategy,
        adapter,
        instrument,
        cash,
        risk=guard,
        poll_seconds=0.25,
        on_update=(lambda status: live.update(view(status, guard, label))) if live else None,
        observer=session.metrics,
        recorder=session.recorder,
        lineage={"code_commit": build_info().commit, "code_dirty": build_info().dirty},
        blobs=BlobStore(),
        alert=lambda text: session.notifier.incident(text, key="ledger-reconciliation"),
    )
    keeper = asyncio.create_task(_keep_ledger(session.recorder))
    session.metrics.starting_equity = float(cash)
    session.readiness.runner = runner
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, runner.stop)
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    try:
        if live:
            live.start()
        status = await runner.run(max_bars=session.bars or None)
        if not session.keep_orders and runner.venue.open_orders[instrument.symbol]:
            await adapter.cancel_all(instrument.symbol)  # Ctrl-C or the end: leave nothing working
            await runner.reconcile()  # fills that beat the cancel are booked; the rest is closed
    finally:
        keeper.cancel()
        if live:
            live.stop()
        await adapter.close()
    path = save_state(runner, guard, label)
    log.info(
        "session stopped",
        bars=status.bars,
        fills=status.fills,
        position=str(status.position),
        equity=round(status.equity, 2),
        guard_state=guard.state.state.name,
        errors=len(status.errors),
    )
    if live is None:
        console.print(view(status, guard, label))
    console.print(f"\nstate saved to {path}", highlight=False)


def save_state(runner: LiveRunner, guard: RiskGuard, label: str, state_dir: Path = Path("var")) -> Path:
    """Where the session stopped: what a restart reconciles against, and what an operator reads."""
    status = runner.status
    state = {
        "mode": label,
        "stopped_at_ms": runner.clock.now(),
        "last_bar_ms": status.bar_ts,
        "bars": status.bars,
        "fills": status.fills,
        "position": str(status.position),
        "equity": status.equity,
        "guard_state": guard.state.state.name,
        "open_orders": [o.trade_id for orders in runner.venue.open_orders.values() for o in orders],
        "errors": status.errors,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "run-state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
    return path
