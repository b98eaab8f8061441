"""A paper session end to end: the engine trades the replaying simulator through the real ccxt
client over loopback, and its own ledger ends equal to the exchange's."""

import asyncio
from decimal import Decimal

from methtrader.data import resolve_bars
from methtrader.engine.live import LiveRunner
from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.venue import SimExchange
from methtrader.strategies import SmaCross


def test_paper_session_ledger_equals_the_exchange(tmp_path):
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    # one hourly bar every 180 ms of wall time; polling stays under the 50/s read limits
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=20_000, cash=Decimal(100_000))
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()
        venue = VenueSettings(network="sim", sim_url=server.url)

        async def main():
            adapter = BybitAdapter(make_client(venue, key, secret), venue)
            runner = LiveRunner(
                SmaCross(fast=2, slow=5, qty=Decimal("0.01")),
                adapter,
                instrument,
                Decimal(100_000),
                poll_seconds=0.05,
            )
            try:
                status = await runner.run(max_bars=40, warmup=10)
                positions = [p for p in await adapter.fetch_positions() if p["contracts"]]
                trades = await adapter.fetch_my_trades("BTCUSDT")
                return runner, status, positions, trades
            finally:
                await adapter.close()

        runner, status, positions, trades = asyncio.run(main())
    assert status.bars >= 40 and status.fills > 3
    assert not status.errors, status.errors
    exchange_qty = sum(Decimal(str(p["contracts"])) * (1 if p["side"] == "long" else -1) for p in positions)
    assert runner.portfolio.position("BTCUSDT") == exchange_qty
    ours = {f for f in runner._seen_exec}
    assert ours == {str(t["id"]) for t in trades}  # every execution counted exactly once
    fees = sum(Decimal(str(t["fee"]["cost"])) for t in trades)
    assert runner.portfolio.account.fees_paid == fees
