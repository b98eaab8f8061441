"""The Bybit adapter against the local simulator with the real ccxt client: orders carry their
trade id, rate-limit headers are captured per request, and a lost response is retried with the
same orderLinkId without doubling the order."""

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from ccxt.base.errors import RequestTimeout

from methtrader.data import resolve_bars
from methtrader.exchange.bybit.adapter import BybitAdapter, ResponseMeta, VenueSettings, make_client
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.venue import SimExchange
from methtrader.model import Order, OrderType, Side, TimeInForce


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> SimExchange:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    return SimExchange(
        series, instrument, state_dir=tmp_path_factory.mktemp("sim"), speed=0, cash=Decimal(100_000)
    )


@pytest.fixture(scope="module")
def server(exchange: SimExchange) -> Iterator[BackgroundServer]:
    with BackgroundServer(exchange) as srv:
        yield srv


def run(
    server: BackgroundServer, exchange: SimExchange, body: Any, **settings: Any
) -> tuple[Any, list[ResponseMeta]]:
    key, secret, _ = exchange.add_key()
    seen: list[ResponseMeta] = []

    async def main() -> Any:
        venue = VenueSettings(network="sim", sim_url=server.url, **settings)
        adapter = BybitAdapter(make_client(venue, key, secret), venue, [seen.append])
        try:
            await adapter.load_markets()
            return await body(adapter)
        finally:
            await adapter.close()

    return asyncio.run(main()), seen


def limit_order(trade_id: str, price: str = "1000") -> Order:
    return Order(
        trade_id, "BTCUSDT", Side.BUY, Decimal("0.01"), OrderType.LIMIT, Decimal(price), TimeInForce.GTC
    )


def test_orders_carry_the_trade_id_and_headers_are_captured_per_request(server, exchange):
    async def body(adapter: BybitAdapter) -> Any:
        placed = await adapter.create_order(limit_order("mt-adapter-1"))
        fetched = await adapter.fetch_order("mt-adapter-1", "BTCUSDT")
        cancelled = await adapter.cancel_order("mt-adapter-1", "BTCUSDT")
        return placed, fetched, cancelled

    (placed, fetched, cancelled), seen = run(server, exchange, body)
    assert placed["clientOrderId"] == fetched["clientOrderId"] == "mt-adapter-1"
    assert fetched["id"] == placed["id"] == cancelled["id"]
    create = [m for m in seen if m.path == "/v5/order/create"]
    assert len(create) == 1 and create[0].status == 200
    headers = {k.lower(): v for k, v in create[0].headers.items()}
    assert int(headers["x-bapi-limit"]) == 10
    assert int(headers["x-bapi-limit-status"]) <= 9
    assert int(headers["x-bapi-limit-reset-timestamp"]) > 0
    assert all(m.elapsed_ms >= 0 for m in seen)


def test_a_lost_response_is_retried_with_the_same_order_link_id(server, exchange):
    async def body(adapter: BybitAdapter) -> Any:
        real_fetch = adapter.client.fetch
        lost = []

        async def flaky_fetch(url, method="GET", headers=None, body=None):
            response = await real_fetch(url, method, headers, body)
            if "/v5/order/create" in url and not lost:
                lost.append(url)  # the order reached the exchange; its answer never reaches us
                raise RequestTimeout("simulated timeout after the request was accepted")
            return response

        adapter.client.fetch = flaky_fetch
        placed = await adapter.create_order(limit_order("mt-adapter-retry"))
        open_orders = await adapter.fetch_open_orders("BTCUSDT")
        return placed, open_orders, lost

    (placed, open_orders, lost), seen = run(server, exchange, body)
    assert lost, "the first response must have been dropped for the test to mean anything"
    assert placed["clientOrderId"] == "mt-adapter-retry"
    mine = [o for o in open_orders if o["clientOrderId"] == "mt-adapter-retry"]
    assert len(mine) == 1, "a lost response must never double an order"
    creates = [m for m in seen if m.path == "/v5/order/create"]
    assert len(creates) == 2  # the original (answer lost) and the retry (answered: duplicate)


def test_settings_validate_the_network():
    with pytest.raises(ValueError, match="sim_url"):
        VenueSettings(network="sim")
    assert VenueSettings().network == "testnet"  # never mainnet by default


def test_a_burst_of_200_orders_gets_no_10006_and_takes_no_longer_than_the_limit(tmp_path):
    """200 order requests fired at once through the governed adapter: the simulator, enforcing
    Bybit's 10 order creations per second, never answers 10006, and the burst ends close to the
    19 seconds the limit allows for the last 190 (each request is paced before it is signed, so
    none arrives with a stale timestamp either)."""
    import time

    from methtrader.exchange.bybit.governor import RateGovernor
    from methtrader.exchange.bybit.monitor import RateLimitMonitor
    from methtrader.exchange.sim.limits_table import RateLimits

    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    assert RateLimits().limit_for("/v5/order/create") == 10
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=0, cash=Decimal(10_000_000))
    monitor = RateLimitMonitor()
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()

        async def main():
            venue = VenueSettings(network="sim", sim_url=server.url)
            adapter = BybitAdapter(make_client(venue, key, secret, RateGovernor(monitor=monitor)), venue)
            try:
                await adapter.load_markets()
                start = time.perf_counter()
                results = await asyncio.gather(
                    *(adapter.create_order(limit_order(f"burst-{n:03d}")) for n in range(200)),
                    return_exceptions=True,
                )
                elapsed = time.perf_counter() - start
                open_orders = await adapter.fetch_open_orders("BTCUSDT")
                return results, elapsed, open_orders
            finally:
                await adapter.close()

        results, elapsed, open_orders = asyncio.run(main())
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert len({o["clientOrderId"] for o in open_orders}) == 200
    rate_limited = monitor.registry.get_sample_value(
        "methtrader_bybit_rate_limited_total", {"endpoint": "/v5/order/create"}
    )
    assert not rate_limited  # zero 10006 answers
    assert 19.0 < elapsed < 19.0 * 1.08 + 0.5, elapsed  # 200 at 10/s: the last 190 need 19 s
