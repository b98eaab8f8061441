"""RateGovernor in real time against a local Bybit-like server that enforces rolling 1 s windows.
Limits are scaled up (50/s) so that a 200-request burst takes about 3 s instead of 19 s."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from methtrader.exchange.bybit.budget import RedisBudget
from methtrader.exchange.bybit.governor import RateGovernor, TradingBlocked
from methtrader.exchange.bybit.monitor import RateLimitMonitor

from .fakes import FakeBybitServer, KeepAliveClient, SlackReceiver

CREATE = "/v5/order/create"
CANCEL = "/v5/order/cancel"


async def call(gov: RateGovernor, client: KeepAliveClient, path: str, log: list[float] | None = None) -> int:
    """One governed request; returns retCode (or the HTTP status when there is no JSON envelope)."""
    async with gov.slot(path) as ticket:
        if log is not None:
            log.append(time.perf_counter())
        status, headers, body = await client.request("POST", path, b'{"category":"linear"}')
        code = body["retCode"] if body is not None else None
        ticket.observe(headers, code, status)
        return status if code is None else int(code)


def test_burst_of_200_at_50_per_second_has_no_10006_and_is_near_the_minimum(
    fake_bybit: FakeBybitServer,
) -> None:
    exchange = fake_bybit.reset({CREATE: 50})
    gov = RateGovernor()  # static table says 10/s: the first response's X-Bapi-Limit says 50
    sends: list[float] = []

    async def burst() -> tuple[list[int], float]:
        async with KeepAliveClient(fake_bybit.url, 50) as client:
            start = time.perf_counter()
            codes = await asyncio.gather(*(call(gov, client, CREATE, sends) for _ in range(200)))
            return codes, time.perf_counter() - start

    codes, elapsed = asyncio.run(burst())
    last_send = sends[-1] - sends[0]
    print(
        f"\nburst 200 @ 50/s: last send at {last_send:.3f} s, all done at {elapsed:.3f} s (minimum 3.000 s)"
    )
    assert codes == [0] * 200
    assert exchange.count(10006) == 0
    assert exchange.max_in_window(CREATE) <= 50
    assert gov.limit_for(CREATE) == 50
    assert 3.0 <= last_send <= elapsed <= 3.0 * 1.15


def test_10006_without_reset_header_waits_the_fallback(fake_bybit: FakeBybitServer) -> None:
    exchange = fake_bybit.reset({CANCEL: 50})
    registry = CollectorRegistry()
    monitor = RateLimitMonitor(registry=registry)
    gov = RateGovernor(monitor=monitor)

    async def run() -> tuple[int, int, float]:
        async with KeepAliveClient(fake_bybit.url, 4) as client:
            exchange.reject_without_reset(1)
            first = await call(gov, client, CANCEL)
            start = time.perf_counter()
            second = await call(gov, client, CANCEL)
            return first, second, time.perf_counter() - start

    first, second, waited = asyncio.run(run())
    print(f"\n10006 without reset header: next request after {waited:.3f} s")
    assert (first, second) == (10006, 0)
    assert 1.45 <= waited <= 1.5 + 0.25
    assert registry.get_sample_value("methtrader_bybit_rate_limited_total", {"endpoint": CANCEL}) == 1.0


def test_http_403_blocks_orders_lets_cancels_through_and_alerts(
    fake_bybit: FakeBybitServer, slack: SlackReceiver
) -> None:
    exchange = fake_bybit.reset({CREATE: 50, CANCEL: 50})
    registry = CollectorRegistry()
    monitor = RateLimitMonitor(slack.url, registry=registry)
    gov = RateGovernor(monitor=monitor, on_alert=monitor.notify)

    async def run() -> tuple[int, float, list[int]]:
        async with KeepAliveClient(fake_bybit.url, 4) as client:
            exchange.forbid(1)
            banned = await call(gov, client, CREATE)
            start = time.perf_counter()
            with pytest.raises(TradingBlocked):
                await call(gov, client, CREATE)
            refused_in = time.perf_counter() - start
            cancels = [await call(gov, client, CANCEL) for _ in range(3)]
            return banned, refused_in, cancels

    try:
        banned, refused_in, cancels = asyncio.run(run())
        assert banned == 403
        assert refused_in < 0.05
        assert cancels == [0, 0, 0]
        assert gov.ip_banned()
        assert exchange.count(403) == 1 and exchange.count(0) == 3  # the refused order never left
        assert monitor.flush(5.0)
        assert len(slack.bodies) == 1 and "403" in slack.bodies[0]["text"]
        assert registry.get_sample_value("methtrader_bybit_ip_banned_total", {"endpoint": CREATE}) == 1.0
    finally:
        monitor.close()


def test_two_processes_sharing_a_redis_budget_stay_under_the_shared_limit(
    fake_bybit: FakeBybitServer, redis_url: str
) -> None:
    exchange = fake_bybit.reset({CANCEL: 40})

    async def run() -> tuple[list[int], float, list[int]]:
        governors = [RateGovernor(RedisBudget.from_url(redis_url, uid="acct-1")) for _ in range(2)]
        try:
            async with (
                KeepAliveClient(fake_bybit.url, 40) as client_a,
                KeepAliveClient(fake_bybit.url, 40) as client_b,
            ):
                start = time.perf_counter()
                jobs = [call(governors[0], client_a, CANCEL) for _ in range(60)]
                jobs += [call(governors[1], client_b, CANCEL) for _ in range(60)]
                codes = await asyncio.gather(*jobs)
                return codes, time.perf_counter() - start, [g.shared_failures for g in governors]
        finally:
            for g in governors:
                await g.close()

    codes, elapsed, failures = asyncio.run(run())
    print(f"\ntwo governors, 2 x 60 @ 40/s shared: {elapsed:.3f} s (minimum 2.000 s)")
    assert failures == [0, 0]
    assert codes == [0] * 120
    assert exchange.count(10006) == 0
    assert exchange.max_in_window(CANCEL) <= 40
    assert 2.0 <= elapsed <= 2.0 * 1.15
