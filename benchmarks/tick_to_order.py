"""Tick-to-order latency of the paper/live runner against the simulator on loopback.

    .venv/bin/python benchmarks/tick_to_order.py [--decisions N] [--ledgers none,sqlite,postgres]

One run measures each ledger configuration in turn, each against a fresh simulator: `none` (no
ledger), `sqlite` (a file in a temporary directory, WAL) and `postgres` (a temporary database on
`--pg-url`, loopback, the server's own durability settings). With a ledger every order is written
ahead as `methtrader run` writes it: order, lineage and a hash-chained audit entry carrying the
rows' SHA-256, committed before the request leaves, with the session's background checkpoints on.

The simulator runs in a child process (its own CPU), replaying seeded synthetic 1-minute BTCUSDT
bars in lockstep: it closes a bar, waits until the order for it has arrived, pauses `--gap-ms`,
closes the next. Our side is the real `LiveRunner` (StreamFeed on ccxt.pro, engine, REST adapter)
with a strategy that flips long/short on every bar, so every bar is one decision and one order.

Our code's time, per decision: from the moment the kline frame is handed to ccxt.pro's client
(`Client.handle_message`, before JSON decoding) to the moment the signed order request is handed to
the HTTP transport (entry of the adapter client's `fetch` for /v5/order/create). The simulator's
times are reported separately: closing a bar (`step`), bar close → frame at our socket (simulator,
uvicorn and loopback), `create_order` inside the simulator, and the order's HTTP round trip.
Both processes read the same CLOCK_MONOTONIC through time.perf_counter_ns.

Prints one JSON object.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
TARGET_P99_MS_WITH_LEDGER = {"sqlite": 1.0, "postgres": 2.0}
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# ----------------------------------------------------------------------------- the simulator
def simulator(pipe: Any, bars: int, history: int, gap_s: float, state_dir: str) -> None:
    """Child process: serve the simulator, then step it in lockstep with the orders."""
    from methtrader.data import gbm_bars
    from methtrader.exchange.sim.limits_table import RateLimits
    from methtrader.exchange.sim.runner import BackgroundServer
    from methtrader.exchange.sim.venue import SimExchange
    from methtrader.model.instrument import BTCUSDT

    series = gbm_bars(bars, seed=7, start_price=30_000.0, interval_ms=60_000, symbol="BTCUSDT")
    limits = RateLimits(per_uid={}, default_uid_limit=10**9, ip_limit=10**9)
    exchange = SimExchange(
        series, BTCUSDT, state_dir=state_dir, speed=0, cash=Decimal(10**9), history=history, limits=limits
    )
    created_ns: list[int] = []
    create = exchange.create_order

    def timed_create(uid: str, params: dict[str, object]) -> Any:
        start = time.perf_counter_ns()
        try:
            return create(uid, params)
        finally:
            created_ns.append(time.perf_counter_ns() - start)

    exchange.create_order = timed_create  # type: ignore[method-assign]
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()
        uid = exchange.keys.get(key).uid  # type: ignore[union-attr]
        account = exchange.account(uid)
        arrived = threading.Event()
        exchange.subscribe(lambda event: arrived.set() if event[0] == "order" and event[1] == uid else None)
        pipe.send((server.url, key, secret))
        _, steps = pipe.recv()
        stamps = []
        for _ in range(steps):
            before = len(account.engine.orders)
            start = time.perf_counter_ns()
            if not exchange.step():
                break
            stamps.append((exchange.bar_ts, start, time.perf_counter_ns() - start))
            deadline = time.monotonic() + 1.0
            while len(account.engine.orders) <= before and time.monotonic() < deadline:
                arrived.wait(0.05)
                arrived.clear()
            time.sleep(gap_s)
        pipe.send({"steps": stamps, "create_ns": created_ns})
        pipe.recv()


# ----------------------------------------------------------------------------- our side
def percentiles(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {"n": 0}
    ordered = sorted(values_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50), 4),
        "p90_ms": round(at(0.90), 4),
        "p99_ms": round(at(0.99), 4),
        "max_ms": round(ordered[-1] / 1e6, 4),
        "mean_ms": round(sum(ordered) / len(ordered) / 1e6, 4),
    }


async def trade(
    pipe: Any,
    decisions: int,
    warmup: int,
    freeze_gc: bool,
    reconcile_s: float,
    observe: bool = False,
    ledger: str = "",
) -> dict[str, Any]:
    from aiohttp import WSMsgType
    from ccxt.async_support.base.ws.client import Client

    from methtrader.engine.live import LiveRunner
    from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
    from methtrader.exchange.bybit.streams import StreamSettings
    from methtrader.model import Bar
    from methtrader.model.instrument import BTCUSDT
    from methtrader.strategies.base import Strategy

    class Flip(Strategy):
        name = "flip"
        qty: Decimal = Decimal("0.001")

        def on_start(self) -> None:
            self.n = 0
            ready.set()

        def on_bar(self, bar: Bar) -> None:
            self.n += 1
            self.target_position(bar.symbol, self.qty if self.n % 2 else -self.qty)

    ready = asyncio.Event()
    arrivals: list[tuple[int, str]] = []  # (perf_counter_ns, raw frame) of kline frames
    orders: list[tuple[int, int, int]] = []  # (bar ts decided on, fetch entry ns, response ns)

    handle_message = Client.handle_message

    def on_frame(self: Any, message: Any) -> Any:
        now = time.perf_counter_ns()
        if message.type == WSMsgType.TEXT and '"kline.' in message.data:
            arrivals.append((now, message.data))
        return handle_message(self, message)

    Client.handle_message = on_frame  # type: ignore[method-assign]

    observer = None
    if observe:  # what `methtrader run` adds: every metric, and JSON logs at INFO (to a file here)
        from methtrader.ops.logs import configure_logging
        from methtrader.ops.metrics import Metrics

        observer = Metrics()
        configure_logging("bench", stream=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)

    recorder = None
    keeper: asyncio.Task[None] | None = None
    if ledger:  # the write-ahead ledger of `methtrader run`: each order committed before it is sent
        from pathlib import Path

        from methtrader.audit import rows
        from methtrader.cli.run import _keep_ledger
        from methtrader.engine.recorder import LedgerRecorder
        from methtrader.store import Database

        db = Database.from_url(ledger, background_checkpoints=True)
        db.upgrade()
        recorder = LedgerRecorder(db, Path(tempfile.mkdtemp()) / "journal.jsonl", audit=rows.seal)
        keeper = asyncio.create_task(_keep_ledger(recorder))

    url, key, secret = pipe.recv()
    venue = VenueSettings(network="sim", sim_url=url)
    adapter = BybitAdapter(make_client(venue, key, secret), venue)
    runner = LiveRunner(
        Flip(),
        adapter,
        BTCUSDT,
        Decimal(10**9),
        interval="1m",
        poll_seconds=0.25,
        settle_seconds=3.0,
        stream_settings=StreamSettings(reconcile_interval_s=reconcile_s),
        observer=observer,
        recorder=recorder,
    )
    fetch = adapter.client.fetch

    async def timed_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        start = time.perf_counter_ns()
        bar_ts = runner.status.bar_ts
        result = await fetch(url, method, headers, body)
        if "/v5/order/create" in url:
            orders.append((bar_ts, start, time.perf_counter_ns()))
        return result

    adapter.client.fetch = timed_fetch  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        run = asyncio.create_task(runner.run(max_bars=decisions + 1, warmup=warmup))
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)  # the start reconciliation and the first gap fill settle
        if freeze_gc:
            gc.collect()
            gc.freeze()
        pipe.send(("go", decisions + 2))
        status = await run
        sim = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    finally:
        if keeper is not None:
            keeper.cancel()
        if recorder is not None:
            recorder.close()
        await adapter.close()
        Client.handle_message = handle_message  # type: ignore[method-assign]
    elapsed = time.perf_counter() - started

    received: dict[int, int] = {}
    start_re = re.compile(r'"start":\s*(\d+)')
    for at, raw in arrivals:
        found = start_re.search(raw)
        if found and '"confirm":true' in raw.replace(" ", ""):
            received.setdefault(int(found.group(1)), at)
    per_bar: dict[int, int] = {}
    for ts, _, _ in orders:
        per_bar[ts] = per_bar.get(ts, 0) + 1
    # a bar with two orders (the REST-filled first bar and its successor) is not one decision
    ours = [start - received[ts] for ts, start, _ in orders if ts in received and per_bar[ts] == 1]
    stepped = {ts: (start, took) for ts, start, took in sim["steps"]}
    to_socket = [received[ts] - stepped[ts][0] for ts in received if ts in stepped]
    ours_stats = percentiles(ours)
    return {
        "benchmark": "tick_to_order",
        "decisions_requested": decisions,
        "decisions_measured": len(ours),
        "orders_sent": len(orders),
        "bars_handled": status.bars,
        "fills": status.fills,
        "errors": status.errors,
        "reconnects": status.reconnects,
        "ours": ours_stats,
        "ledger_outage": recorder.outage if recorder is not None else None,
        "simulator": {
            "step": percentiles([took for _, took in stepped.values()]),
            "step_to_our_socket": percentiles(to_socket),
            "create_order": percentiles(sim["create_ns"]),
            "order_http_round_trip": percentiles([end - start for _, start, end in orders]),
        },
        "wall_seconds": round(elapsed, 2),
    }


def measure(args: argparse.Namespace, ledger: str) -> dict[str, Any]:
    """One configuration against its own simulator child process."""
    context = mp.get_context("spawn")
    ours, theirs = context.Pipe()
    with tempfile.TemporaryDirectory() as state_dir:
        child = context.Process(
            target=simulator,
            args=(theirs, args.decisions + args.warmup + 50, args.warmup + 10, args.gap_ms / 1000, state_dir),
            daemon=True,
        )
        child.start()
        try:
            return asyncio.run(
                trade(
                    ours,
                    args.decisions,
                    args.warmup,
                    args.gc_freeze,
                    args.reconcile_s,
                    args.observe,
                    ledger,
                )
            )
        finally:
            ours.send("bye")
            child.join(timeout=15)
            if child.is_alive():
                child.terminate()


@contextlib.contextmanager
def ledger_url(kind: str, pg_url: str) -> Iterator[str]:
    """A fresh, empty ledger of `kind`, removed afterwards."""
    if kind == "none":
        yield ""
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/t2o.db"
    elif kind == "postgres":
        import sqlalchemy as sa

        name = f"t2o_{os.getpid()}"
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        try:
            yield str(sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()
    else:
        raise SystemExit(f"--ledgers: unknown ledger {kind!r} (none, sqlite, postgres)")


def targets(runs: dict[str, dict[str, Any]]) -> dict[str, bool]:
    met: dict[str, bool] = {}
    for kind, result in runs.items():
        stats, measured = result["ours"], result["decisions_measured"] > 0
        if kind == "none":
            met["none_p50_lt_1ms"] = measured and stats["p50_ms"] < TARGET_P50_MS
            met["none_p99_lt_5ms"] = measured and stats["p99_ms"] < TARGET_P99_MS
        else:
            limit = TARGET_P99_MS_WITH_LEDGER[kind]
            met[f"{kind}_p99_lt_{limit:g}ms"] = measured and stats["p99_ms"] < limit and not result["errors"]
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=10_000, help="bars traded (one order each)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up bars read over REST")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="simulator pause after each order")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() our heap before trading")
    parser.add_argument("--observe", action="store_true", help="metrics and JSON logging on, as in `run`")
    parser.add_argument(
        "--ledgers", default="none,sqlite,postgres", help="comma-separated: none, sqlite, postgres"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server for the postgres run")
    parser.add_argument(
        "--reconcile-s", type=float, default=60.0, help="the runner's periodic REST safety check (seconds)"
    )
    args = parser.parse_args()
    runs: dict[str, dict[str, Any]] = {}
    for kind in [k.strip() for k in args.ledgers.split(",") if k.strip()]:
        with ledger_url(kind, args.pg_url) as url:
            runs[kind] = measure(args, url)
    result = {
        "benchmark": "tick_to_order",
        "runs": runs,
        "targets": targets(runs),
        "config": {
            "decisions": args.decisions,
            "gap_ms": args.gap_ms,
            "warmup": args.warmup,
            "gc_freeze": args.gc_freeze,
            "observe": args.observe,
            "reconcile_s": args.reconcile_s,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "simulator": "separate process",
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
