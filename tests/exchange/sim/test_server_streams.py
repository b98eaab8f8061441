"""WebSocket streams of the simulator against ccxt.pro, pybit's WebSocket and a raw client."""

import asyncio
import contextlib
import hashlib
import hmac
import json
import queue
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxt_pro
import pytest
import websockets
from pybit import unified_trading

from methtrader.data import resolve_bars
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.streams import stream_chaos
from methtrader.exchange.sim.venue import SimExchange

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> SimExchange:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    return SimExchange(
        series, instrument, state_dir=tmp_path_factory.mktemp("sim-ws"), speed=0, cash=Decimal(100_000)
    )


@pytest.fixture(scope="module")
def server(exchange: SimExchange) -> Iterator[BackgroundServer]:
    with BackgroundServer(exchange) as srv:
        yield srv


def make_pro(srv: BackgroundServer, key: str, secret: str) -> Any:
    client = ccxt_pro.bybit(
        {
            "apiKey": key,
            "secret": secret,
            "options": {
                "fetchMarkets": {"types": ["linear"]},
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
            },
        }
    )
    for name in ("public", "private", "spot", "futures", "v2"):
        client.urls["api"][name] = srv.url
    ws = srv.ws_url
    client.urls["api"]["ws"] = {
        "public": {c: f"{ws}/v5/public/{c}" for c in ("linear", "spot", "inverse", "option")},
        "private": {"contract": f"{ws}/v5/private", "spot": {"unified": f"{ws}/v5/private"}},
    }
    return client


def test_server_ccxt_pro_public_streams(server: BackgroundServer, exchange: SimExchange) -> None:
    async def main() -> None:
        c = make_pro(server, "", "")
        try:
            await c.load_markets()
            book = await asyncio.wait_for(c.watch_order_book(SYMBOL, 1), 5)
            assert book["bids"][0][0] < book["asks"][0][0]
            ticker = await asyncio.wait_for(c.watch_ticker(SYMBOL), 5)
            assert ticker["last"] == pytest.approx(float(exchange.series.close[exchange.index]), abs=0.1)
            pending = asyncio.create_task(c.watch_ohlcv(SYMBOL, "1h"))
            await asyncio.sleep(0.3)
            exchange.step()
            candles = await asyncio.wait_for(pending, 5)
            assert candles[-1][0] == exchange.bar_ts
            assert candles[-1][4] == pytest.approx(float(exchange.series.close[exchange.index]))
            trades = asyncio.create_task(c.watch_trades(SYMBOL))
            await asyncio.sleep(0.3)
            exchange.step()
            [trade] = (await asyncio.wait_for(trades, 5))[-1:]
            assert trade["price"] == pytest.approx(float(exchange.series.close[exchange.index]), abs=0.1)
        finally:
            await c.close()

    asyncio.run(main())


def test_server_ccxt_pro_private_streams(server: BackgroundServer, exchange: SimExchange) -> None:
    key, secret, _ = exchange.add_key()

    async def main() -> None:
        c = make_pro(server, key, secret)
        try:
            await c.load_markets()
            orders = asyncio.create_task(c.watch_orders())
            await asyncio.sleep(0.5)
            placed = await c.create_order(SYMBOL, "limit", "buy", 0.01, 1000, {"clientOrderId": "ws-1"})
            [seen] = await asyncio.wait_for(orders, 5)
            assert seen["id"] == placed["id"] and seen["clientOrderId"] == "ws-1" and seen["status"] == "open"
            trades = asyncio.create_task(c.watch_my_trades())
            await asyncio.sleep(0.3)
            market = await c.create_order(SYMBOL, "market", "buy", 0.01)
            exchange.step()
            [fill] = await asyncio.wait_for(trades, 5)
            assert fill["order"] == market["id"] and fill["amount"] == 0.01
            positions = await asyncio.wait_for(c.watch_positions(), 5)
            assert [(p["contracts"], p["side"]) for p in positions if p["contracts"]] == [(0.01, "long")]
        finally:
            await c.close()

    asyncio.run(main())


def test_server_pybit_websocket(
    server: BackgroundServer, exchange: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unified_trading, "PUBLIC_WSS", f"{server.ws_url}/v5/public/{{CHANNEL_TYPE}}")
    monkeypatch.setattr(unified_trading, "PRIVATE_WSS", f"{server.ws_url}/v5/private")
    # pybit records a subscription's req_id only after sending it: an ack faster than that (loopback)
    # raises KeyError inside pybit and drops the socket; Bybit is never that close, so neither is this
    monkeypatch.setattr(stream_chaos(exchange), "reply_delay_s", 0.05)
    key, secret, _ = exchange.add_key()
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    public = unified_trading.WebSocket(testnet=False, channel_type="linear")
    private = unified_trading.WebSocket(testnet=False, channel_type="private", api_key=key, api_secret=secret)
    try:
        public.kline_stream(interval=60, symbol="BTCUSDT", callback=received.put)
        private.order_stream(callback=received.put)
        uid = exchange.keys.get(key).uid  # type: ignore[union-attr]
        topics: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 20
        attempt = 0
        # pybit gives no signal once its subscriptions are acknowledged: act until both streams
        # have spoken (a loaded machine may need more than one bar)
        while len(topics) < 2 and time.monotonic() < deadline:
            attempt += 1
            if "order" not in topics:
                exchange.create_order(
                    uid,
                    {
                        "category": "linear",
                        "symbol": "BTCUSDT",
                        "side": "Sell",
                        "orderType": "Limit",
                        "qty": "0.01",
                        "price": "99999",
                        "orderLinkId": f"pybit-ws-{attempt}",
                    },
                )
            exchange.step()
            with contextlib.suppress(queue.Empty):
                while True:
                    message = received.get(timeout=0.5)
                    topics[message["topic"]] = message
        assert topics["kline.60.BTCUSDT"]["data"][0]["start"] == exchange.bar_ts
        assert topics["order"]["data"][0]["orderLinkId"].startswith("pybit-ws-")
    finally:
        public.exit()
        private.exit()


def test_server_raw_websocket_protocol(server: BackgroundServer, exchange: SimExchange) -> None:
    key, secret, _ = exchange.add_key()

    async def main() -> None:
        async with websockets.connect(f"{server.ws_url}/v5/public/linear") as ws:
            await ws.send(json.dumps({"req_id": "p1", "op": "ping"}))
            pong = json.loads(await ws.recv())
            assert pong["op"] == "ping" and pong["ret_msg"] == "pong" and pong["success"] is True
            assert pong["req_id"] == "p1" and pong["conn_id"]
            await ws.send(json.dumps({"req_id": "s1", "op": "subscribe", "args": ["nope.BTCUSDT"]}))
            bad = json.loads(await ws.recv())
            assert bad["success"] is False and bad["req_id"] == "s1"
            await ws.send(json.dumps({"req_id": "s2", "op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}))
            ack = json.loads(await ws.recv())
            assert ack == {**ack, "success": True, "ret_msg": "", "req_id": "s2", "op": "subscribe"}
            snapshot = json.loads(await ws.recv())
            assert snapshot["topic"] == "orderbook.1.BTCUSDT" and snapshot["type"] == "snapshot"
            await ws.ping()  # protocol-level ping frames are answered too
        async with websockets.connect(f"{server.ws_url}/v5/private") as ws:
            await ws.send(json.dumps({"req_id": "x", "op": "subscribe", "args": ["order"]}))
            assert json.loads(await ws.recv())["success"] is False  # not authenticated yet
            expires = str(int(time.time() * 1000) + 10_000)
            await ws.send(json.dumps({"op": "auth", "args": [key, expires, "0" * 64]}))
            failed = json.loads(await ws.recv())
            assert (
                failed["success"] is False and failed["ret_msg"] == "Params Error" and failed["op"] == "auth"
            )
            signature = hmac.new(
                secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
            ).hexdigest()
            await ws.send(json.dumps({"req_id": "a", "op": "auth", "args": [key, int(expires), signature]}))
            ok = json.loads(await ws.recv())
            assert ok["success"] is True and ok["op"] == "auth"
            await ws.send(json.dumps({"req_id": "q", "op": "ping"}))
            pong = json.loads(await ws.recv())
            assert pong["op"] == "pong" and pong["req_id"] == "q" and pong["args"][0].isdigit()

    asyncio.run(main())
