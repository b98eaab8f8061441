"""Kill the trader at each step of an order's life — after it is written but before the request
leaves, after the exchange took it but before its answer was recorded, after its fill was booked
but before the order was closed — then restart it: the start-up reconciliation leaves the ledger
equal to the exchange (the simulator, in its own process, outlives the trader)."""

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from sqlalchemy import select

from methtrader.engine.reconcile import FINAL_STATUS
from methtrader.store import Database, schema
from support.slack import SlackReceiver

RUN = [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", "0",
       "-p", "fast=2", "-p", "slow=5"]  # fmt: skip


def exchange_view(url: str, key: str, secret: str) -> tuple[dict[str, str], set[str]]:
    """Order statuses by orderLinkId and execution ids, straight from the exchange's REST API."""
    import asyncio

    from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client

    async def read() -> tuple[dict[str, str], set[str]]:
        venue = VenueSettings(network="sim", sim_url=url)
        adapter = BybitAdapter(make_client(venue, key, secret), venue)
        try:
            query = {"category": "linear", "symbol": "BTCUSDT", "limit": 50}
            history, _ = await adapter.fetch_pages("privateGetV5OrderHistory", query)
            live, _ = await adapter.fetch_pages("privateGetV5OrderRealtime", query)
            executions, _ = await adapter.fetch_pages("privateGetV5ExecutionList", {**query, "limit": 100})
        finally:
            await adapter.close()
        statuses = {r["orderLinkId"]: _ours(r["orderStatus"]) for r in [*history, *live]}
        return statuses, {r["execId"] for r in executions}

    return asyncio.run(read())


def _ours(status: str) -> str:
    """Bybit's order status in the ledger's words (its final states map onto ours)."""
    final = FINAL_STATUS.get(status)
    return str(final) if final is not None else status


PARTIAL = (
    "--volume-share",
    "0.00002",
)  # a market order fills a share of the bar's volume, the rest is cancelled


@pytest.mark.parametrize(
    ("point", "sim_options", "victim_status"),
    [
        ("before_send", (), None),
        ("after_send", (), "Filled"),
        ("after_fill", (), "Filled"),
        ("after_fill", PARTIAL, "Cancelled"),
    ],
    ids=["before-send", "after-send", "after-fill", "after-partial-fill"],
)
def test_restart_after_a_crash_leaves_the_ledger_equal_to_the_exchange(
    tmp_path, simulator, point, sim_options, victim_status, log_sink
):
    url, key, secret = simulator
    env = {**os.environ, "METHTRADER_API_KEY": key, "METHTRADER_API_SECRET": secret}
    crashed = subprocess.run(
        [*RUN, "--sim-url", url, "--bars", "400"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**env, "METHTRADER_CRASH_AT": point},
    )  # fmt: skip
    log_sink(crashed.stdout + crashed.stderr)
    assert crashed.returncode == 70, crashed.stderr[-2000:]  # died at the point, not before
    with Database.from_url(f"sqlite:///{tmp_path / 'var' / 'methtrader.db'}") as db, db.connect() as conn:
        victim, status = conn.execute(select(schema.orders.c.trade_id, schema.orders.c.status)).one()
        booked = conn.execute(select(schema.fills.c.exec_id)).all()
    # the ledger knew the order before it could be sent; a market order fills on arrival, and its
    # execution may reach the private stream (and the ledger) before the create's own answer does
    raced = point == "after_send" and status == "Filled" and len(booked) == 1
    assert status == "New" or raced, status

    slack = SlackReceiver()
    restarted = subprocess.run(
        [*RUN, "--sim-url", url, "--bars", "6"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**env, "METHTRADER_SLACK_WEBHOOK_URL": slack.url},
    )  # fmt: skip
    slack.close()
    log_sink(restarted.stdout + restarted.stderr)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    found = [json.loads(line) for line in restarted.stdout.splitlines() if "ledger reconcil" in line]
    assert found and found[0]["event"] == "ledger reconciled", restarted.stdout[-3000:]
    check = found[0]
    statuses, executions = exchange_view(url, key, secret)
    with Database.from_url(f"sqlite:///{tmp_path / 'var' / 'methtrader.db'}") as db, db.connect() as conn:
        ledger = dict(conn.execute(select(schema.orders.c.trade_id, schema.orders.c.status)).all())
        fills = conn.execute(select(schema.fills.c.exec_id, schema.fills.c.trade_id)).all()
        events = (
            conn.execute(select(schema.order_events.c.kind).where(schema.order_events.c.trade_id == victim))
            .scalars()
            .all()
        )
    assert {exec_id for exec_id, _ in fills} == executions and len(fills) == len(executions)  # once each
    if point == "before_send":
        assert check["never_sent"] == [victim] and victim not in statuses
        assert ledger[victim] == "Rejected" and "not_on_exchange" in events
        assert any("never reached the exchange" in text for text in slack.texts), slack.texts
        ledger.pop(victim)
    else:
        assert check["updated"] == ({} if raced else {victim: victim_status})
        assert raced or "reconciled" in events
        assert check["fills_inserted"] == (1 if point == "after_send" and not raced else 0)
        assert bool(check["fills_inserted"]) == any("missing from the ledger" in t for t in slack.texts)
    if sim_options == PARTIAL:
        with Database.from_url(f"sqlite:///{tmp_path / 'var' / 'methtrader.db'}") as db, db.connect() as conn:
            qty, filled = conn.execute(
                select(schema.orders.c.qty, schema.orders.c.filled_qty).where(
                    schema.orders.c.trade_id == victim
                )
            ).one()
        assert 0 < filled < qty  # the partial fill, booked once
    assert ledger == statuses  # every other order: the exchange's status
    assert Decimal(check["ledger_position"]) == Decimal(check["exchange_position"])


def exchange_position(url: str, key: str, secret: str) -> Decimal:
    """The account's signed BTCUSDT position, as the exchange reports it."""
    import asyncio

    from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
    from methtrader.exchange.bybit.streams import signed_positions

    async def read() -> Decimal:
        venue = VenueSettings(network="sim", sim_url=url)
        adapter = BybitAdapter(make_client(venue, key, secret), venue)
        try:
            rows, _ = await adapter.fetch_pages(
                "privateGetV5PositionList", {"category": "linear", "symbol": "BTCUSDT"}
            )
        finally:
            await adapter.close()
        return signed_positions(rows).get("BTCUSDT", Decimal(0))

    return asyncio.run(read())


def test_a_restart_adopts_the_position_open_on_the_exchange(tmp_path, simulator, log_sink):
    """Issue 10.1: killed with a position open, the next session started from 0 in memory and kept
    trading, so the exchange's position drifted to 2-3x the strategy's size. Now the session starts
    from the exchange's position and the strategy's orders keep it within its size."""
    url, key, secret = simulator
    env = {**os.environ, "METHTRADER_API_KEY": key, "METHTRADER_API_SECRET": secret}
    crashed = subprocess.run(
        [*RUN, "--sim-url", url, "--bars", "400"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**env, "METHTRADER_CRASH_AT": "after_fill"},
    )  # fmt: skip
    log_sink(crashed.stdout + crashed.stderr)
    held = exchange_position(url, key, secret)
    assert crashed.returncode == 70 and held != 0  # died with a position open
    seen = [held]
    for _ in range(3):  # each restart trades a few bars on top of what the exchange holds
        again = subprocess.run(
            [*RUN, "--sim-url", url, "--bars", "8"], cwd=tmp_path, capture_output=True, text=True,
            timeout=120, env=env,
        )  # fmt: skip
        log_sink(again.stdout + again.stderr)
        assert again.returncode == 0, again.stderr[-2000:]
        seen.append(exchange_position(url, key, secret))
        adopted = [
            json.loads(x) for x in again.stdout.splitlines() if "position adopted from the exchange" in x
        ]
        assert adopted or seen[-2:-1] == [Decimal(0)], again.stdout[-3000:]
    assert all(abs(p) <= Decimal("0.1") for p in seen), seen  # never beyond the strategy's qty
