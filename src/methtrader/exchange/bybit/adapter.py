"""The Bybit adapter: ccxt (async) for mainnet, testnet, demo trading or the local simulator, with
the rate-limit headers captured per request and orders that are safe to retry.

Every order is sent with its trade id as `orderLinkId`. When a response is lost (timeout, dropped
connection) the same request is sent again; if Bybit already has the order it answers "duplicate
orderLinkId" and the adapter fetches that order instead — a lost response never doubles an order.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import ccxt.async_support as ccxt_async
from ccxt.base.errors import (
    ExchangeNotAvailable,
    InvalidOrder,
    NetworkError,
    OrderNotFound,
    RateLimitExceeded,
    RequestTimeout,
)

from methtrader.model import Bar, Order, OrderType

if TYPE_CHECKING:
    from methtrader.exchange.bybit.governor import RateGovernor

Network = Literal["mainnet", "testnet", "demo", "sim"]

DUPLICATE_LINK_ID = "110072"
SIM_INSTANCE_HEADER = "X-Sim-Instance"  # the simulator names itself on every response


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """One HTTP exchange as the adapter saw it: what the rate-limit governor and monitor read."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    elapsed_ms: float


_CALLS: ContextVar[list[ResponseMeta] | None] = ContextVar("methtrader_bybit_calls", default=None)


class CapturingBybit(ccxt_async.bybit):
    """ccxt's Bybit client, paced by a RateGovernor and recording each response's headers in the
    calling task's context — not in the shared `last_response_headers`, which concurrent
    requests overwrite."""

    governor: "RateGovernor | None" = None

    def on_rest_response(
        self, code, reason, url, method, response_headers, response_body, request_headers, request_body
    ):  # type: ignore[no-untyped-def]
        meta = ResponseMeta(
            method,
            _path(url),
            int(code),
            dict(response_headers),
            (time.perf_counter() - self._started.get(time.perf_counter())) * 1e3,
        )
        _LAST.set(meta)
        self._ret_code.set(_ret_code(response_body))
        calls = _CALLS.get()
        if calls is not None:
            calls.append(meta)
        return super().on_rest_response(
            code, reason, url, method, response_headers, response_body, request_headers, request_body
        )

    async def fetch2(self, path, api=None, method="GET", params=None, config=None):  # type: ignore[no-untyped-def]
        """Pace before ccxt signs the request: a request that waited for budget after signing
        would reach Bybit with a stale timestamp (10002)."""
        api = ["public"] if api is None else api
        params = {} if params is None else params
        config = {} if config is None else config
        if self.governor is None or "market/" in path:
            return await super().fetch2(path, api, method, params, config)
        _LAST.set(None)
        async with self.governor.slot("/" + path.lstrip("/")) as ticket:
            try:
                return await super().fetch2(path, api, method, params, config)
            finally:
                meta = _LAST.get()
                if meta is not None:
                    ticket.observe(meta.headers, self._ret_code.get(), meta.status)

    async def fetch(self, url, method="GET", headers=None, body=None):  # type: ignore[no-untyped-def]
        self._started.set(time.perf_counter())
        return await super().fetch(url, method, headers, body)

    _started: ContextVar[float] = ContextVar("methtrader_bybit_started")
    _ret_code: ContextVar[int | None] = ContextVar("methtrader_bybit_ret_code", default=None)


_LAST: ContextVar[ResponseMeta | None] = ContextVar("methtrader_bybit_last", default=None)


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]


def _ret_code(body: object) -> int | None:
    """Bybit's retCode from a raw body, without a full parse of large answers."""
    text = body if isinstance(body, str) else ""
    start = text.find('"retCode":')
    if start < 0:
        return None
    digits = text[start + 10 : start + 20].split(",", 1)[0].split("}", 1)[0].strip()
    return int(digits) if digits.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class VenueSettings:
    """Where to trade. Mainnet must be asked for explicitly; `sim` needs the simulator's URL."""

    network: Network = "testnet"
    sim_url: str | None = None
    timeout_ms: int = 10_000
    retries: int = 3
    recv_window_ms: int = 5_000

    def __post_init__(self) -> None:
        if self.network == "sim" and not self.sim_url:
            raise ValueError("network 'sim' needs sim_url, e.g. http://127.0.0.1:8765")


def make_client(
    settings: VenueSettings, api_key: str = "", api_secret: str = "", governor: "RateGovernor | None" = None
) -> CapturingBybit:
    """A configured ccxt client: linear markets only, unified account, our recv_window, and
    requests paced by `governor` (Bybit's own limit headers) instead of ccxt's fixed delay."""
    client = CapturingBybit(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": False,  # our governor paces requests from Bybit's own headers
            "timeout": settings.timeout_ms,
            "options": {
                "defaultType": "swap",
                "fetchMarkets": {"types": ["linear"]},
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                "recvWindow": settings.recv_window_ms,
            },
        }
    )
    client.governor = governor
    return point_at(client, settings)


def point_at(client: Any, settings: VenueSettings) -> Any:
    """Aim a ccxt or ccxt.pro Bybit client at the settings' network: testnet, demo trading, or
    the local simulator (REST and WebSocket URLs); mainnet needs nothing."""
    if settings.network == "testnet":
        client.set_sandbox_mode(True)
    elif settings.network == "demo":
        client.enable_demo_trading(True)
    elif settings.network == "sim":
        for key in ("public", "private", "spot", "futures", "v2"):
            client.urls["api"][key] = settings.sim_url
        host = settings.sim_url.split("://", 1)[-1]  # type: ignore[union-attr]
        client.urls["api"]["ws"] = {
            "public": {"linear": f"ws://{host}/v5/public/linear"},
            "private": {"contract": f"ws://{host}/v5/private", "spot": f"ws://{host}/v5/private"},
        }
    return client


Observer = Callable[[ResponseMeta], None]


@dataclass
class BybitAdapter:
    """Async edge to Bybit for the engine: orders, cancels and account state, each call's
    response headers handed to `observers` (rate-limit governor, monitor)."""

    client: CapturingBybit
    settings: VenueSettings = field(default_factory=VenueSettings)
    observers: list[Observer] = field(default_factory=list)

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, request: Callable[[], Awaitable[Any]]) -> Any:
        calls: list[ResponseMeta] = []
        token = _CALLS.set(calls)
        try:
            return await request()
        finally:
            _CALLS.reset(token)
            for meta in calls:
                for observer in self.observers:
                    observer(meta)

    async def load_markets(self) -> dict[str, Any]:
        return await self._call(self.client.load_markets)

    async def create_order(self, order: Order) -> dict[str, Any]:
        """Place `order` with orderLinkId = trade id; retried with the same id after a lost
        response, so Bybit sees at most one order whatever happens on the wire."""
        symbol = self.market_symbol(order.symbol)
        params: dict[str, Any] = {"orderLinkId": order.trade_id, "timeInForce": str(order.tif)}
        if order.reduce_only:
            params["reduceOnly"] = True
        kind = "market" if order.type is OrderType.MARKET else "limit"
        price = float(order.price) if order.price is not None else None
        last_error: Exception | None = None
        for attempt in range(self.settings.retries + 1):
            try:
                return await self._call(
                    lambda: self.client.create_order(
                        symbol, kind, str(order.side).lower(), float(order.qty), price, params
                    )
                )
            except RateLimitExceeded as exc:
                last_error = exc  # refused, not placed: the governor now holds us until the reset
            except (RequestTimeout, ExchangeNotAvailable, NetworkError) as exc:
                last_error = exc  # the request may or may not have arrived: same id again
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
            except InvalidOrder as exc:
                if attempt and DUPLICATE_LINK_ID in str(exc):
                    return await self.fetch_order(order.trade_id, order.symbol)
                raise
        assert last_error is not None
        raise last_error

    async def fetch_order(self, trade_id: str, symbol: str) -> dict[str, Any]:
        """An order by our trade id, open or closed (OrderNotFound when Bybit has none)."""
        market = self.market_symbol(symbol)
        params = {"orderLinkId": trade_id}
        for query in (self.client.fetch_open_orders, self.client.fetch_closed_orders):
            found = await self._call(lambda query=query: query(market, None, None, params))
            for order in found:
                if order.get("clientOrderId") == trade_id:
                    return order
        raise OrderNotFound(f"no order with orderLinkId {trade_id} on {symbol}")

    async def cancel_order(self, trade_id: str, symbol: str) -> dict[str, Any]:
        market = self.market_symbol(symbol)
        return await self._call(lambda: self.client.cancel_order(None, market, {"orderLinkId": trade_id}))

    async def cancel_all(self, symbol: str) -> Any:
        market = self.market_symbol(symbol)
        return await self._call(lambda: self.client.cancel_all_orders(market))

    async def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        market = self.market_symbol(symbol) if symbol else None
        # every page: Bybit answers 20 orders at a time by default
        return await self._call(lambda: self.client.fetch_open_orders(market, None, None, {"paginate": True}))

    async def fetch_positions(self) -> list[dict[str, Any]]:
        return await self._call(lambda: self.client.fetch_positions(None, {"settleCoin": "USDT"}))

    async def fetch_balance(self) -> dict[str, Any]:
        return await self._call(self.client.fetch_balance)

    async def identity(self) -> tuple[str, str]:
        """(venue, account) the ledger scopes rows by: `bybit-<network>` or `sim-<instance>` (the
        simulator's X-Sim-Instance header: a new simulator is a new venue) and the key's UID."""
        answer = await self._call(self.client.privateGetV5UserQueryApi)
        uid = str((answer.get("result") or {}).get("userID") or "")
        if self.settings.network != "sim":
            return f"bybit-{self.settings.network}", uid
        meta = _LAST.get()  # this task's last response: the one just answered
        headers = {k.lower(): v for k, v in (meta.headers if meta is not None else {}).items()}
        return f"sim-{headers.get(SIM_INSTANCE_HEADER.lower(), 'unknown')}", uid

    async def fetch_pages(self, endpoint: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Every page of a V5 list endpoint (ccxt's implicit method name, e.g.
        `privateGetV5ExecutionList`), and the server time of the first answer."""
        method = getattr(self.client, endpoint)
        rows: list[dict[str, Any]] = []
        cursor = ""
        server_ms = 0
        for _ in range(1000):
            query = {**params, "cursor": cursor} if cursor else dict(params)
            response = await self._call(lambda query=query: method(query))
            server_ms = server_ms or int(response.get("time") or 0)
            result = response.get("result") or {}
            rows.extend(result.get("list") or [])
            cursor = result.get("nextPageCursor") or ""
            if not cursor:
                break
        return rows, server_ms

    async def fetch_klines(
        self, symbol: str, interval: str, start: int | None = None, end: int | None = None, limit: int = 1000
    ) -> list[Bar]:
        """Klines from REST, oldest first (Bybit answers newest first, at most 1000 a call); the
        last one may still be forming."""
        params: dict[str, Any] = {
            "category": "linear",
            "symbol": symbol,
            "interval": self.client.timeframes.get(interval, interval),
            "limit": max(1, min(limit, 1000)),
        }
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        response = await self._call(lambda: self.client.publicGetV5MarketKline(params))
        rows = (response.get("result") or {}).get("list") or []
        return [
            Bar(symbol, int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in sorted(rows, key=lambda r: int(r[0]))
        ]

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]:
        market = self.market_symbol(symbol)
        return await self._call(lambda: self.client.fetch_my_trades(market, since_ms))

    def market_symbol(self, symbol: str) -> str:
        """Bybit's `BTCUSDT` as ccxt's unified `BTC/USDT:USDT` (markets must be loaded)."""
        markets = self.client.markets_by_id or {}
        found = markets.get(symbol)
        if found:
            return found[0]["symbol"]
        if symbol.endswith("USDT"):
            return f"{symbol[:-4]}/USDT:USDT"
        return symbol
