"""RateGovernor on a virtual clock: pacing of bursts, 10006 and remaining=0 blocks, IP ban, reconciliation.
The exchange is an in-process rolling-window model driven by the same fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from methtrader.exchange.bybit.budget import Decision, InMemoryBudget, RedisBudget, Window
from methtrader.exchange.bybit.governor import RateGovernor, TradingBlocked
from methtrader.exchange.bybit.limits import LimitStatus

from .fakes import FakeClock, RollingWindowExchange

CREATE = "/v5/order/create"
CANCEL = "/v5/order/cancel"


def governor(clock: FakeClock, **kwargs: object) -> RateGovernor:
    kwargs.setdefault("ip_limit", None)
    return RateGovernor(clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


async def send(gov: RateGovernor, exchange: RollingWindowExchange, clock: FakeClock, path: str) -> int:
    async with gov.slot(path) as ticket:
        _, body, headers = exchange.handle(path, clock())
        ticket.observe(headers, body["retCode"], 200)
        return int(body["retCode"])


def test_burst_of_200_orders_at_10_per_second_takes_19_seconds_and_no_10006() -> None:
    clock = FakeClock()
    exchange = RollingWindowExchange({CREATE: 10})
    gov = governor(clock)

    async def burst() -> list[int]:
        return await asyncio.gather(*(send(gov, exchange, clock, CREATE) for _ in range(200)))

    codes = asyncio.run(burst())
    assert codes.count(10006) == 0 and exchange.count(0) == 200
    assert gov.phantoms_added == 0
    assert exchange.max_in_window(CREATE) == 10
    theoretical = (200 / 10 - 1) * 1.0  # the 20th group of ten cannot start before t = 19 s
    assert theoretical <= clock.elapsed_s <= theoretical * 1.15
    assert clock.elapsed_s == pytest.approx(19 * 1.010)


def test_spot_and_linear_orders_have_separate_budgets() -> None:
    clock = FakeClock()
    gov = governor(clock)

    async def run() -> None:
        for _ in range(20):
            await gov.release(await gov.acquire(CREATE, category="spot"))
        for _ in range(10):
            await gov.release(await gov.acquire(CREATE, category="linear"))

    asyncio.run(run())
    assert clock.elapsed_s == 0.0
    assert gov.limit_for(CREATE, "spot") == 20 and gov.limit_for(CREATE, "linear") == 10


def test_live_header_limit_replaces_the_static_table() -> None:
    clock = FakeClock()
    exchange = RollingWindowExchange({CANCEL: 25})
    gov = governor(clock)

    async def run() -> list[int]:
        return [await send(gov, exchange, clock, CANCEL) for _ in range(25)]

    assert asyncio.run(run()).count(10006) == 0
    assert gov.limit_for(CANCEL) == 25
    assert clock.elapsed_s == 0.0  # 25 in the first window although the table says 10


def test_10006_with_reset_header_blocks_until_reset() -> None:
    clock = FakeClock()
    gov = governor(clock, guard_ms=0.0)

    async def run() -> None:
        await gov.release(await gov.acquire(CANCEL))
        gov.observe(CANCEL, LimitStatus(10, 0, int(clock() + 700)), 10006, 200)
        await gov.acquire(CANCEL)

    asyncio.run(run())
    assert clock.elapsed_s == pytest.approx(0.7)


def test_10006_without_reset_header_falls_back_to_one_and_a_half_seconds() -> None:
    clock = FakeClock()
    gov = governor(clock)

    async def run() -> None:
        gov.observe(CANCEL, LimitStatus(10, 0, None), 10006, 200)
        await gov.acquire(CANCEL)
        gov.observe(CANCEL, None, 10006, 200)
        await gov.acquire(CANCEL)

    asyncio.run(run())
    assert clock.elapsed_s == pytest.approx(3.0)


def test_10006_with_absurd_reset_is_capped_and_stale_reset_uses_fallback() -> None:
    clock = FakeClock()
    gov = governor(clock, max_block_ms=5_000.0, guard_ms=0.0)

    async def run() -> None:
        gov.observe(CANCEL, LimitStatus(10, 0, int(clock() + 3_600_000)), 10006, 200)
        await gov.acquire(CANCEL)
        gov.observe(CANCEL, LimitStatus(10, 0, int(clock() - 50_000)), 10006, 200)
        await gov.acquire(CANCEL)

    asyncio.run(run())
    assert clock.elapsed_s == pytest.approx(5.0 + 1.5)


def test_header_remaining_zero_is_obeyed_even_if_our_count_disagrees() -> None:
    clock = FakeClock()
    gov = governor(clock, guard_ms=0.0)

    async def run() -> None:
        gov.observe(CANCEL, LimitStatus(10, 0, int(clock() + 800)), 0, 200)
        await gov.acquire(CANCEL)

    asyncio.run(run())
    # at least until the reset; the 10 unseen requests are also assumed to have arrived just now
    assert 0.8 <= clock.elapsed_s <= 1.0 + 1e-9


def test_remaining_lower_than_our_count_reserves_the_difference() -> None:
    clock = FakeClock()
    gov = governor(clock, guard_ms=0.0)

    async def run() -> list[float]:
        ticket = await gov.acquire(CANCEL)
        ticket.observe({"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "3"})  # someone else used 6
        await gov.release(ticket)
        times = []
        for _ in range(4):
            await gov.release(await gov.acquire(CANCEL))
            times.append(clock.elapsed_s)
        return times

    times = asyncio.run(run())
    assert gov.phantoms_added == 6
    assert times[:3] == [0.0, 0.0, 0.0]
    assert times[3] == pytest.approx(1.0)


def test_ip_ban_refuses_orders_lets_cancels_through_and_alerts_once() -> None:
    clock = FakeClock()
    alerts: list[tuple[str, str]] = []
    gov = governor(clock, on_alert=lambda key, text: alerts.append((key, text)), ip_ban_ms=600_000.0)

    async def run() -> None:
        gov.observe(CREATE, None, None, 403)
        gov.observe(CANCEL, None, None, 403)
        with pytest.raises(TradingBlocked, match="403"):
            await gov.acquire(CREATE)
        with pytest.raises(TradingBlocked):
            await gov.acquire("/v5/order/amend")
        with pytest.raises(TradingBlocked):
            await gov.acquire("/v5/some/custom", is_order=True)
        await gov.release(await gov.acquire(CANCEL))
        await gov.release(await gov.acquire("/v5/order/cancel-all"))
        await gov.release(await gov.acquire(CREATE, is_order=False))  # caller says: not opening risk
        clock.now += 600_001
        await gov.release(await gov.acquire(CREATE))
        gov.observe(CREATE, None, None, 403)
        gov.lift_ip_ban()
        await gov.release(await gov.acquire(CREATE))

    asyncio.run(run())
    assert [key for key, _ in alerts] == ["ip-ban", "ip-ban"]
    assert "cancels continue" in alerts[0][1]


def test_orders_waiting_for_budget_are_refused_when_a_ban_starts() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        await never.wait()

    gov = RateGovernor(clock=clock, sleep=stuck_sleep, ip_limit=None)

    async def run() -> None:
        for _ in range(10):
            await gov.release(await gov.acquire(CREATE))
        waiting = asyncio.ensure_future(gov.acquire(CREATE))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        gov.observe(CANCEL, None, None, 403)
        with pytest.raises(TradingBlocked):
            await asyncio.wait_for(waiting, 1.0)

    asyncio.run(run())


def test_batch_cost_counts_each_order_and_is_clamped_to_the_limit() -> None:
    clock = FakeClock()
    gov = governor(clock, guard_ms=0.0)

    async def run() -> list[float]:
        times = []
        for cost in (4, 4, 4, 15):
            await gov.release(await gov.acquire("/v5/order/create-batch", cost=cost))
            times.append(clock.elapsed_s)
        return times

    assert asyncio.run(run()) == [0.0, 0.0, pytest.approx(1.0), pytest.approx(2.0)]


def test_ip_window_paces_across_endpoints() -> None:
    clock = FakeClock()
    gov = governor(clock, ip_limit=30, ip_window_ms=5000.0, guard_ms=0.0)

    async def run() -> None:
        for path in ("/v5/order/realtime", "/v5/position/list", "/v5/execution/list"):
            for _ in range(10):
                await gov.release(await gov.acquire(path))
        await gov.acquire("/v5/account/info")

    asyncio.run(run())
    assert clock.elapsed_s == pytest.approx(5.0)


def test_unreachable_redis_falls_back_to_local_pacing() -> None:
    from support.redis_server import free_port

    clock = FakeClock()
    budget = RedisBudget.from_url(f"redis://127.0.0.1:{free_port()}/0")
    gov = governor(clock, budget=budget)
    exchange = RollingWindowExchange({CANCEL: 10})

    async def run() -> list[int]:
        try:
            return [await send(gov, exchange, clock, CANCEL) for _ in range(25)]
        finally:
            await gov.close()

    assert asyncio.run(run()).count(10006) == 0
    assert gov.shared_failures > 0
    assert clock.elapsed_s == pytest.approx(2 * 1.01)


def test_redis_budget_matches_in_memory_budget(redis_url: str) -> None:
    """Random reserve/complete/block/reconcile sequences give the same decisions in Lua and in Python."""
    rng = random.Random(7)

    async def run() -> None:
        memory = InMemoryBudget()
        shared = RedisBudget.from_url(redis_url, uid="equivalence")
        try:
            now = 1_700_000_000_000.0
            in_flight: list[tuple[tuple[Window, ...], str]] = []
            for step in range(600):
                now += rng.choice([0.0, 0.0, 3.0, 40.0, 250.0, 900.0])
                op = rng.random()
                if op < 0.6:
                    cost = rng.choice([1, 1, 1, 3])
                    windows = (Window("/v5/order/cancel", 10, 1000.0, cost), Window("ip", 25, 5000.0, 1))
                    token = f"t{step}"
                    a = await memory.reserve(windows, token, now, now + 10_000)
                    b = await shared.reserve(windows, token, now, now + 10_000)
                    assert a.granted == b.granted, step
                    assert a.wait_ms == pytest.approx(b.wait_ms, abs=0.01), step
                    if a.granted:
                        in_flight.append((windows, token))
                elif op < 0.85 and in_flight:
                    windows, token = in_flight.pop(rng.randrange(len(in_flight)))
                    await memory.complete(windows, token, now)
                    await shared.complete(windows, token, now)
                elif op < 0.92:
                    until = now + rng.choice([100.0, 700.0])
                    await memory.block("/v5/order/cancel", until, now)
                    await shared.block("/v5/order/cancel", until, now)
                else:
                    window = Window("/v5/order/cancel", 10, 1000.0)
                    used, since = rng.randrange(0, 11), now - rng.choice([1000.0, 1500.0])
                    a_added = await memory.reconcile(window, used, since, now, f"x{step}")
                    b_added = await shared.reconcile(window, used, since, now, f"x{step}")
                    assert a_added == b_added, step
        finally:
            await shared.close()

    asyncio.run(run())


def test_in_memory_budget_waits_for_the_oldest_needed_entry() -> None:
    budget = InMemoryBudget()
    windows = (Window("k", 2, 1000.0),)

    async def run() -> list[Decision]:
        out = [
            await budget.reserve(windows, "a", 0.0, 10_000.0),
            await budget.reserve(windows, "b", 100.0, 10_000.0),
        ]
        out.append(await budget.reserve(windows, "c", 200.0, 10_000.0))  # both in flight: at least a window
        await budget.complete(windows, "a", 300.0)
        out.append(await budget.reserve(windows, "c", 400.0, 10_000.0))  # a done at 300 → wait until 1300
        return out

    decisions = asyncio.run(run())
    assert [d.granted for d in decisions] == [True, True, False, False]
    assert decisions[2].wait_ms == 1000.0
    assert decisions[3].wait_ms == 900.0
