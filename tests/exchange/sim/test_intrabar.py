"""Between two steps the bar trading now moves along its intrabar path: resting limits fill the
moment the path reaches them, and tickers, the book and the public stream show the path's price.

The replay is frozen at bar 514 of btcusdt-1h-2019-2020; bar 515 trades now: open 3514.85,
low 3446.69, high 3540, close 3535.15, an up bar, so its path is 3514.85 → 3446.69 → 3540 → 3535.15
at 0, 1/3, 2/3 and 1 of its duration.
"""

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
import websockets
from pybit.unified_trading import HTTP

from methtrader.data import resolve_bars
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.venue import SimExchange

from .test_server_streams import make_pro

HISTORY = 514


def frozen(tmp_path: Path, **options: float) -> SimExchange:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    speed = options.get("speed", 0.0)
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=speed, history=HISTORY)
    live = exchange.live_bar()
    assert (live.open, live.low, live.high, live.close) == (3514.85, 3446.69, 3540.0, 3535.15)
    return exchange


def session(srv: BackgroundServer, key: str, secret: str) -> HTTP:
    client = HTTP(api_key=key, api_secret=secret)
    client.endpoint = srv.url
    return client


def test_a_resting_limit_fills_when_the_path_reaches_it(tmp_path: Path) -> None:
    """It used to wait for the step that closes the bar: an hour of data, a minute at speed 60."""
    exchange = frozen(tmp_path)
    key, secret, _ = exchange.add_key()
    order = {"category": "linear", "symbol": "BTCUSDT", "orderType": "Limit", "qty": "0.01"}
    with BackgroundServer(exchange) as srv:
        http = session(srv, key, secret)

        def status(link_id: str) -> tuple[str, str]:
            [row] = http.get_open_orders(category="linear", orderLinkId=link_id)["result"]["list"]
            return row["orderStatus"], row["avgPrice"]

        async def main() -> tuple[int, int]:
            pro = make_pro(srv, key, secret)
            try:
                await pro.load_markets()
                http.place_order(**order, side="Buy", price="3480", orderLinkId="dip")
                http.place_order(**order, side="Sell", price="3539", orderLinkId="top")
                http.place_order(**order, side="Sell", price="3600", orderLinkId="far")
                assert {status(k)[0] for k in ("dip", "top", "far")} == {"New"}
                assert exchange.advance_path(0.1)  # 3494.40: above the buy at 3480
                assert status("dip") == ("New", "")
                updates = asyncio.create_task(pro.watch_orders())
                await asyncio.sleep(0.5)
                before = int(time.time() * 1000)
                assert exchange.advance_path(0.25)  # 3463.73: through 3480
                after = int(time.time() * 1000)
                [seen] = await asyncio.wait_for(updates, 5)
                assert (seen["clientOrderId"], seen["status"], seen["average"]) == ("dip", "closed", 3480)
                return before, after
            finally:
                await pro.close()

        before, after = asyncio.run(main())
        assert status("dip") == ("Filled", "3480.0")
        [fill] = http.get_executions(category="linear", orderLinkId="dip")["result"]["list"]
        assert (fill["execPrice"], fill["isMaker"], fill["execFee"]) == ("3480.0", True, "0.00696")
        assert before <= int(fill["execTime"]) <= after  # when the path got there
        assert status("top") == ("New", "")
        exchange.advance_path(2 / 3)  # 3540: through the sell at 3539
        assert status("top") == ("Filled", "3539.0")
        assert status("far") == ("New", "")
        assert exchange.index == HISTORY  # no bar was stepped meanwhile
        exchange.step()
        assert status("far") == ("New", "")  # the bar's close left it, as the bar itself does
        positions = http.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"]
        assert positions[0]["size"] == "0"


def test_tickers_and_the_book_show_the_price_on_the_path(tmp_path: Path) -> None:
    """They showed the last close until the next step, whatever the bar trading now did."""
    exchange = frozen(tmp_path)
    with BackgroundServer(exchange) as srv:
        http = session(srv, "", "")

        def last() -> tuple[str, str, str]:
            [row] = http.get_tickers(category="linear", symbol="BTCUSDT")["result"]["list"]
            return row["lastPrice"], row["bid1Price"], row["ask1Price"]

        assert last() == ("3514.8", "3514.7", "3514.9")  # the open (half-even to the tick)
        exchange.advance_path(1 / 3)
        assert last() == ("3446.7", "3446.6", "3446.8")  # the low

        async def main() -> list[dict[str, object]]:
            async with websockets.connect(f"{srv.ws_url}/v5/public/linear") as ws:
                topics = ["tickers.BTCUSDT", "orderbook.1.BTCUSDT", "kline.60.BTCUSDT"]
                await ws.send(json.dumps({"op": "subscribe", "args": topics}))
                first = [json.loads(await ws.recv()) for _ in range(3)]  # ack, book, ticker
                assert first[0]["success"] is True
                exchange.advance_path(2 / 3)  # the high: every price topic is pushed again
                pushed = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
                with pytest.raises(TimeoutError):  # klines are closed bars: none for a move
                    await asyncio.wait_for(ws.recv(), 0.3)
                return first[1:] + pushed

        messages = asyncio.run(main())
        by_topic: dict[object, list[dict[str, object]]] = {}
        for m in messages:
            by_topic.setdefault(m["topic"], []).append(m)
        books = [m["data"] for m in by_topic["orderbook.1.BTCUSDT"]]  # type: ignore[index]
        assert [(b["b"][0][0], b["a"][0][0]) for b in books] == [("3446.6", "3446.8"), ("3539.9", "3540.1")]
        tickers = [m["data"] for m in by_topic["tickers.BTCUSDT"]]  # type: ignore[index]
        assert [t["lastPrice"] for t in tickers] == ["3446.7", "3540.0"]
        assert tickers[-1]["highPrice24h"] >= "3540.0"
        klines = http.get_kline(category="linear", symbol="BTCUSDT", interval="60", limit=1)["result"]
        assert Decimal(klines["list"][0][4]) == Decimal("3514.85")  # the last closed bar, not the path
        exchange.step()
        assert last() == ("3535.2", "3535.1", "3535.3")  # bar 516 opens where 515 closed


def test_the_replay_moves_the_price_along_the_path_between_steps(tmp_path: Path) -> None:
    exchange = frozen(tmp_path, speed=3600 / 0.4)  # a bar every 0.4 s

    async def main() -> list[tuple[int, float]]:
        await exchange.start()
        seen = []
        try:
            while exchange.index == HISTORY:
                seen.append((exchange.index, exchange.price_now()))
                await asyncio.sleep(0.02)
        finally:
            await exchange.stop()
        return seen

    prices = [p for _, p in asyncio.run(main())]
    assert prices[0] == 3514.85 and len(set(prices)) >= 3  # the open, then along the path
    assert all(3446.69 <= p <= 3540 for p in prices)
