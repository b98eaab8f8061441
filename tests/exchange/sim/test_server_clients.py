"""The simulator against UNMODIFIED real clients (ccxt async, pybit) on a real uvicorn server."""

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import httpx
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    OrderNotFound,
    RateLimitExceeded,
)
from pybit.unified_trading import HTTP

from methtrader.data import resolve_bars
from methtrader.exchange.sim.limits_table import RateLimits
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.venue import SimExchange

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> SimExchange:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    state = tmp_path_factory.mktemp("sim-state")
    return SimExchange(series, instrument, state_dir=state, speed=0, cash=Decimal(100_000))


@pytest.fixture(scope="module")
def server(exchange: SimExchange) -> Iterator[BackgroundServer]:
    with BackgroundServer(exchange) as srv:
        yield srv


@pytest.fixture
def creds(exchange: SimExchange, server: BackgroundServer) -> tuple[str, str, str]:
    """A fresh key (and account) per test, created while the server is already running."""
    return exchange.add_key()


def make_ccxt(url: str, key: str = "", secret: str = "", **options: Any) -> ccxt_async.bybit:
    client = ccxt_async.bybit(
        {
            "apiKey": key,
            "secret": secret,
            "options": {
                "fetchMarkets": {"types": ["linear"]},
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                **options,
            },
        }
    )
    for name in ("public", "private", "spot", "futures", "v2"):
        client.urls["api"][name] = url
    return client


def run_ccxt(
    url: str, creds: tuple[str, str, str], body: Callable[[Any], Awaitable[Any]], **opts: Any
) -> Any:
    async def main() -> Any:
        client = make_ccxt(url, creds[0], creds[1], **opts)
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_server_ccxt_public_market_data(server: BackgroundServer, exchange: SimExchange) -> None:
    async def body(c: Any) -> None:
        markets = await c.load_markets()
        assert list(markets) == [SYMBOL]
        market = markets[SYMBOL]
        assert market["precision"]["price"] == 0.1 and market["precision"]["amount"] == 0.001
        assert market["limits"]["amount"]["min"] == 0.001
        server_ms = await c.fetch_time()
        assert abs(server_ms - time.time() * 1000) < 5000  # wall clock, not the replay's bar time
        bars = await c.fetch_ohlcv(SYMBOL, "1h", limit=5)
        assert len(bars) == 5
        assert bars[-1][0] == exchange.bar_ts  # ccxt sorts oldest first; the last is the current bar
        assert [b[0] for b in bars] == sorted(b[0] for b in bars)
        four = await c.fetch_ohlcv(SYMBOL, "4h", limit=3)
        assert all(b[0] % (4 * 3_600_000) == 0 for b in four)
        ticker = await c.fetch_ticker(SYMBOL)
        close = float(exchange.series.close[exchange.index])
        assert ticker["last"] == pytest.approx(close, abs=0.1)
        assert ticker["bid"] < ticker["last"] < ticker["ask"]

    run_ccxt(server.url, ("", "", ""), body)


def test_server_ccxt_trading_flow(server: BackgroundServer, exchange: SimExchange, creds: Any) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        market = await c.create_order(SYMBOL, "market", "buy", 0.01)
        assert market["id"]
        limit = await c.create_order(SYMBOL, "limit", "buy", 0.01, 1000, {"clientOrderId": "cl-limit-1"})
        assert limit["clientOrderId"] == "cl-limit-1"
        open_orders = await c.fetch_open_orders(SYMBOL)
        assert [o["id"] for o in open_orders] == [limit["id"]]  # the market order filled at once
        assert open_orders[0]["clientOrderId"] == "cl-limit-1"
        assert open_orders[0]["price"] == 1000 and open_orders[0]["status"] == "open"
        positions = [p for p in await c.fetch_positions() if p["contracts"]]
        assert len(positions) == 1
        assert positions[0]["side"] == "long" and positions[0]["contracts"] == 0.01
        open_price = float(exchange.series.open[exchange.index + 1])  # the bar trading now
        assert positions[0]["entryPrice"] == pytest.approx(open_price, abs=0.1)
        trades = await c.fetch_my_trades(SYMBOL)
        assert len(trades) == 1 and trades[0]["order"] == market["id"] and trades[0]["amount"] == 0.01
        assert trades[0]["fee"]["cost"] == pytest.approx(0.01 * trades[0]["price"] * 0.00055)
        balance = await c.fetch_balance()
        assert balance["USDT"]["total"] == pytest.approx(100_000 - trades[0]["fee"]["cost"], abs=1)
        assert balance["USDT"]["used"] > 0

        cancelled = await c.cancel_order(limit["id"], SYMBOL)
        assert cancelled["id"] == limit["id"]
        assert await c.fetch_open_orders(SYMBOL) == []
        with pytest.raises(OrderNotFound):
            await c.cancel_order(limit["id"], SYMBOL)
        closed = await c.fetch_closed_orders(SYMBOL)  # orderStatus=Filled
        assert [(o["id"], o["status"]) for o in closed] == [(market["id"], "closed")]
        canceled = await c.fetch_canceled_orders(SYMBOL)  # orderStatus=Cancelled
        assert [(o["id"], o["status"]) for o in canceled] == [(limit["id"], "canceled")]

    run_ccxt(server.url, creds, body)


def test_server_ccxt_cancel_all_and_amend(server: BackgroundServer, creds: Any) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        first = await c.create_order(SYMBOL, "limit", "buy", 0.01, 1000)
        await c.create_order(SYMBOL, "limit", "buy", 0.02, 1100)
        edited = await c.edit_order(first["id"], SYMBOL, "limit", "buy", 0.03, 1200)
        assert edited["id"] == first["id"]
        orders = {o["id"]: o for o in await c.fetch_open_orders(SYMBOL)}
        assert orders[first["id"]]["amount"] == 0.03 and orders[first["id"]]["price"] == 1200
        await c.cancel_all_orders(SYMBOL)
        assert await c.fetch_open_orders(SYMBOL) == []

    run_ccxt(server.url, creds, body)


def test_server_ccxt_order_rejections(server: BackgroundServer, creds: Any) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        await c.create_order(SYMBOL, "limit", "buy", 0.01, 1000, {"clientOrderId": "dup-1"})
        with pytest.raises(InvalidOrder, match=r"110072.*OrderLinkedID is duplicate"):
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 1000, {"clientOrderId": "dup-1"})
        with pytest.raises(InsufficientFunds, match="110007"):
            await c.create_order(SYMBOL, "limit", "buy", 1000, 3000)
        with pytest.raises(InvalidOrder, match="110017"):
            await c.create_order(SYMBOL, "market", "sell", 0.01, None, {"reduceOnly": True})

    run_ccxt(server.url, creds, body)


def test_server_ccxt_bad_signature_is_authentication_error(server: BackgroundServer, creds: Any) -> None:
    async def body(c: Any) -> None:
        with pytest.raises(AuthenticationError, match="10004"):
            await c.fetch_balance()

    run_ccxt(server.url, (creds[0], "not-the-secret", creds[2]), body)

    async def unknown(c: Any) -> None:
        with pytest.raises(AuthenticationError, match="10003"):
            await c.fetch_balance()

    run_ccxt(server.url, ("unknownkey12345678", creds[1], ""), unknown)


def test_server_ccxt_stale_timestamp_is_invalid_nonce(server: BackgroundServer, creds: Any) -> None:
    async def body(c: Any) -> None:
        c.options["timeDifference"] = 60_000  # the client's clock is a minute behind
        with pytest.raises(InvalidNonce, match="10002"):
            await c.fetch_balance()

    run_ccxt(server.url, creds, body)


def test_server_missing_auth_headers_is_http_401_with_bybit_envelope(
    server: BackgroundServer, creds: Any
) -> None:
    """Bybit's JSON body, not a bare text: clients read retCode whatever the HTTP status."""
    reply = httpx.get(f"{server.url}/v5/account/wallet-balance?accountType=UNIFIED")
    assert reply.status_code == 401 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert (body["retCode"], body["retMsg"], body["result"]) == (10003, "API key is invalid.", {})
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    reply = httpx.post(f"{server.url}/v5/order/create", content=b"{}")
    assert reply.status_code == 401 and reply.json()["retCode"] == 10003
    key_only = {"X-BAPI-API-KEY": creds[0]}  # a key but no timestamp or signature
    reply = httpx.post(f"{server.url}/v5/order/create", content=b"{}", headers=key_only)
    assert reply.status_code == 401
    assert reply.json()["retCode"] == 10004 and reply.json()["retMsg"].startswith("error sign!")


def test_server_rate_limit_headers_and_10006(server: BackgroundServer, creds: Any) -> None:
    async def body(c: Any) -> None:
        await c.fetch_balance()
        headers = {k.lower(): v for k, v in c.last_response_headers.items()}
        assert headers["x-bapi-limit"] == "50"
        assert int(headers["x-bapi-limit-status"]) == 49
        assert abs(int(headers["x-bapi-limit-reset-timestamp"]) - time.time() * 1000) < 5000
        c.enableRateLimit = False
        await asyncio.sleep(1.05)  # load_markets queried coin/query-info once: let that window roll
        # coin/query-info allows 5 requests per second per UID: the 6th within the second breaches
        results = await asyncio.gather(*(c.fetch_currencies() for _ in range(8)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors and all(isinstance(e, RateLimitExceeded) for e in errors)
        assert "10006" in str(errors[0]) and "Too many visits!" in str(errors[0])
        assert sum(not isinstance(r, Exception) for r in results) == 5

    run_ccxt(server.url, creds, body)


def test_server_pybit_waits_out_10006_and_retries(
    server: BackgroundServer, creds: Any, caplog: pytest.LogCaptureFixture
) -> None:
    session = HTTP(api_key=creds[0], api_secret=creds[1], return_response_headers=True)
    session.endpoint = server.url
    for _ in range(5):
        session.get_coin_info()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="pybit"):
        reply, _, _ = session.get_coin_info()  # 6th in the second: 10006, sleeps to the reset, retries
    assert reply["retCode"] == 0 and reply["result"]["rows"]
    assert "Too many visits! (ErrCode: 10006)" in caplog.text
    assert time.monotonic() - started < 1.5


def test_server_signature_is_checked_on_the_raw_query(server: BackgroundServer, creds: Any) -> None:
    key, secret, _ = creds
    query = "symbol=BTCUSDT&category=linear&settleCoin=USDT"  # not sorted: verified as sent
    ts = str(int(time.time() * 1000))
    signature = hmac.new(secret.encode(), f"{ts}{key}5000{query}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": signature,
    }
    reply = httpx.get(f"{server.url}/v5/position/list?{query}", headers=headers).json()
    assert reply["retCode"] == 0 and reply["result"]["list"][0]["size"] == "0"
    resorted = "category=linear&settleCoin=USDT&symbol=BTCUSDT"
    reply = httpx.get(f"{server.url}/v5/position/list?{resorted}", headers=headers).json()
    assert reply["retCode"] == 10004 and reply["retMsg"].startswith("error sign! origin_string[")


def test_server_public_replies_carry_limit_headers(server: BackgroundServer) -> None:
    reply = httpx.get(f"{server.url}/v5/market/time")
    assert reply.status_code == 200
    body = reply.json()
    assert body["retCode"] == 0 and body["retMsg"] == "OK" and set(body) >= {"result", "retExtInfo", "time"}
    for name in ("X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"):
        assert name in reply.headers


def test_server_pybit_http(server: BackgroundServer, exchange: SimExchange, creds: Any) -> None:
    session = HTTP(api_key=creds[0], api_secret=creds[1], return_response_headers=True)
    session.endpoint = server.url
    placed, _, headers = session.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.005",
        orderLinkId="pybit-1",
    )
    assert placed["retCode"] == 0 and placed["result"]["orderLinkId"] == "pybit-1"
    assert headers["X-Bapi-Limit"] == "10"
    positions, _, _ = session.get_positions(category="linear", symbol="BTCUSDT")
    [position] = positions["result"]["list"]
    assert position["side"] == "Sell" and position["size"] == "0.005"
    wallet, _, _ = session.get_wallet_balance(accountType="UNIFIED")
    [account] = wallet["result"]["list"]
    assert account["accountType"] == "UNIFIED"
    assert Decimal(account["totalEquity"]) < Decimal(100_000)
    orders, _, _ = session.get_order_history(category="linear", orderLinkId="pybit-1")
    assert orders["result"]["list"][0]["orderStatus"] == "Filled"


def test_server_key_added_while_running_is_accepted(server: BackgroundServer, exchange: SimExchange) -> None:
    key, secret, uid = exchange.add_key()
    session = HTTP(api_key=key, api_secret=secret)
    session.endpoint = server.url
    info = session.get_api_key_information()
    assert info["result"]["userID"] == int(uid)


def test_server_instruments_pagination_and_other_categories(server: BackgroundServer) -> None:
    linear = httpx.get(f"{server.url}/v5/market/instruments-info", params={"category": "linear", "limit": 1})
    result = linear.json()["result"]
    assert [i["symbol"] for i in result["list"]] == ["BTCUSDT"] and result["nextPageCursor"] == ""
    assert result["list"][0]["lotSizeFilter"]["qtyStep"] == "0.001"
    spot = httpx.get(f"{server.url}/v5/market/instruments-info", params={"category": "spot"})
    assert spot.json()["result"]["list"] == []
    pre = httpx.get(
        f"{server.url}/v5/market/instruments-info", params={"category": "linear", "status": "PreLaunch"}
    )
    assert pre.json()["result"]["list"] == []


def test_server_ip_limit_is_http_403(tmp_path: Path) -> None:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    limits = RateLimits(ip_limit=5, ip_window_ms=5000, ip_ban_ms=0)
    ex = SimExchange(series, instrument, state_dir=tmp_path, speed=0, limits=limits)
    with BackgroundServer(ex) as srv:
        codes = [httpx.get(f"{srv.url}/v5/market/time").status_code for _ in range(7)]
        assert codes == [200] * 5 + [403, 403]

        async def body(c: Any) -> None:
            with pytest.raises(RateLimitExceeded):
                await c.fetch_time()

        run_ccxt(srv.url, ("", "", ""), body)
