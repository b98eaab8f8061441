"""Bybit V5 over HTTP for the simulator: `create_app(exchange)` returns a FastAPI application.

Real clients (ccxt, ccxt.pro, pybit) work against it unchanged but for their base URLs. Replies
use Bybit's envelope `{retCode, retMsg, result, retExtInfo, time}` with HTTP 200, numbers as
strings; HTTP 401 (with the envelope, retCode 10003/10004) when auth headers are missing and 403
when an IP breaks 600 requests / 5 s. Every reply carries X-Bapi-Limit, X-Bapi-Limit-Status and
X-Bapi-Limit-Reset-Timestamp: the UID's endpoint window on signed endpoints, the IP window on
public ones; and X-Sim-Instance, the simulator instance that answered (`SimExchange.instance_id`),
so a client can tell one simulator's accounts from another's. retCodes: see errors.py.
"""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from methtrader.exchange.sim import payloads
from methtrader.exchange.sim.auth import MissingAuth, verify_rest
from methtrader.exchange.sim.errors import PARAMS, TOO_MANY_VISITS, BybitError
from methtrader.exchange.sim.keys import ApiKey
from methtrader.exchange.sim.limits_table import Verdict
from methtrader.exchange.sim.market import klines, ticker
from methtrader.exchange.sim.streams import register_streams
from methtrader.exchange.sim.venue import SimExchange, check_category, now_ms
from methtrader.model import Order

Params = dict[str, Any]
Handler = Callable[[SimExchange, ApiKey, Params], object]

LAUNCH_MS = 1584230400000
INSTANCE_HEADER = "X-Sim-Instance"


def envelope(
    result: object,
    code: int = 0,
    message: str = "OK",
    headers: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    body = {
        "retCode": code,
        "retMsg": message,
        "result": result if result is not None else {},
        "retExtInfo": {},
        "time": now_ms(),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _int(params: Params, name: str, default: int, low: int = 1, high: int | None = None) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError as exc:
        raise BybitError(PARAMS, f"params error: {name} invalid") from exc
    if value < low or (high is not None and value > high):
        raise BybitError(PARAMS, f"params error: {name} out of range")
    return value


def _page(items: list[Any], params: Params, default: int, maximum: int) -> tuple[list[Any], str]:
    """Offset pagination; the cursor is opaque to clients, `""` means the last page."""
    limit = _int(params, "limit", default, 1, maximum)
    cursor = str(params.get("cursor") or "")
    try:
        offset = int(cursor) if cursor else 0
    except ValueError as exc:
        raise BybitError(PARAMS, "params error: cursor invalid") from exc
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return chunk, str(offset + limit) if more else ""


# ----------------------------------------------------------------------------- public handlers
def _time(ex: SimExchange, params: Params) -> object:
    ms = now_ms()
    return {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}


def _instruments(ex: SimExchange, params: Params) -> object:
    category = str(params.get("category") or "")
    if category not in ("linear", "inverse", "spot", "option"):
        raise BybitError(PARAMS, "params error: category invalid")
    items: list[dict[str, object]] = []
    if category == "linear" and params.get("status", "Trading") == "Trading":
        symbol = params.get("symbol")
        items = [
            payloads.instrument_info(inst, LAUNCH_MS)
            for inst in ex.instruments.values()
            if symbol in (None, "", inst.symbol) and params.get("baseCoin") in (None, "", inst.base_coin)
        ]
    chunk, cursor = _page(items, params, 500, 1000)
    return {"category": category, "list": chunk, "nextPageCursor": cursor}


def _symbol(ex: SimExchange, params: Params, required: bool = True) -> str | None:
    symbol = params.get("symbol")
    if not symbol:
        if required:
            raise BybitError(PARAMS, "params error: symbol is required")
        return None
    if symbol not in ex.instruments:
        raise BybitError(PARAMS, "params error: symbol invalid")
    return str(symbol)


def _kline(ex: SimExchange, params: Params) -> object:
    category = params.get("category") or "linear"
    if category != "linear":
        raise BybitError(PARAMS, "params error: category only support linear")
    symbol = _symbol(ex, params)
    interval = str(params.get("interval") or "")
    start = _int(params, "start", -1, 0) if params.get("start") else None
    end = _int(params, "end", -1, 0) if params.get("end") else None
    limit = _int(params, "limit", 200, 1, 1000)
    with ex.lock:
        rows = klines(ex.series, ex.index, interval, ex.interval_ms, start, end, limit)
    return {"category": "linear", "symbol": symbol, "list": rows}


def _tickers(ex: SimExchange, params: Params) -> object:
    category = params.get("category")
    if category not in ("linear", "inverse", "spot", "option"):
        raise BybitError(PARAMS, "params error: category invalid")
    if category != "linear":
        return {"category": category, "list": []}
    symbol = _symbol(ex, params, required=False)
    with ex.lock:
        items = [
            ticker(ex.series, ex.index, inst, ex.config.funding_rate, ex.price_now())
            for inst in ex.instruments.values()
            if symbol in (None, inst.symbol)
        ]
    return {"category": "linear", "list": items}


# ----------------------------------------------------------------------------- private handlers
def _create(ex: SimExchange, key: ApiKey, params: Params) -> object:
    meta = ex.create_order(key.uid, params)
    return {"orderId": meta.order_id, "orderLinkId": meta.order_link_id}


def _amend(ex: SimExchange, key: ApiKey, params: Params) -> object:
    meta = ex.amend_order(key.uid, params)
    return {"orderId": meta.order_id, "orderLinkId": meta.order_link_id}


def _cancel(ex: SimExchange, key: ApiKey, params: Params) -> object:
    meta = ex.cancel_order(key.uid, params)
    return {"orderId": meta.order_id, "orderLinkId": meta.order_link_id}


def _cancel_all(ex: SimExchange, key: ApiKey, params: Params) -> object:
    metas = ex.cancel_all(key.uid, params)
    return {"list": [{"orderId": m.order_id, "orderLinkId": m.order_link_id} for m in metas], "success": "1"}


OTHER_CATEGORIES = ("inverse", "spot", "option")


def _other_category(params: Params) -> dict[str, object] | None:
    """Read endpoints answer an empty list for the categories the simulator does not trade."""
    category = params.get("category")
    if category in OTHER_CATEGORIES:
        return {"category": category, "list": [], "nextPageCursor": ""}
    check_category(params)
    return None


def _order_list(ex: SimExchange, key: ApiKey, params: Params, orders: list[Order]) -> object:
    account = ex.account(key.uid)
    symbol = _symbol(ex, params, required=False)
    order_id = params.get("orderId") or None
    link_id = params.get("orderLinkId") or None
    status = params.get("orderStatus") or None
    rows = []
    for order in sorted(orders, key=lambda o: o.created_ts, reverse=True):
        meta = account.meta_of(order.trade_id)
        if symbol and order.symbol != symbol:
            continue
        if (order_id and meta.order_id != order_id) or (link_id and meta.order_link_id != link_id):
            continue
        item = payloads.order_payload(order, meta, ex.instruments.get(order.symbol))
        if status and item["orderStatus"] != status:
            continue
        rows.append(item)
    chunk, cursor = _page(rows, params, 20, 50)
    return {"category": "linear", "list": chunk, "nextPageCursor": cursor}


def _realtime(ex: SimExchange, key: ApiKey, params: Params) -> object:
    if (empty := _other_category(params)) is not None:
        return empty
    with ex.lock:
        account = ex.account(key.uid)
        if (params.get("orderId") or params.get("orderLinkId")) and str(params.get("openOnly", "0")) == "0":
            orders = [o for o in account.engine.orders.values() if o.trade_id in account.meta]
        else:
            orders = ex.open_orders(key.uid)
        return _order_list(ex, key, params, orders)


def _history(ex: SimExchange, key: ApiKey, params: Params) -> object:
    if (empty := _other_category(params)) is not None:
        return empty
    with ex.lock:
        account = ex.account(key.uid)
        return _order_list(ex, key, params, list(account.engine.orders.values()))


def _executions(ex: SimExchange, key: ApiKey, params: Params) -> object:
    if (empty := _other_category(params)) is not None:
        return empty
    symbol = _symbol(ex, params, required=False)
    start = _int(params, "startTime", 0, 0)
    end = _int(params, "endTime", 0, 0)
    with ex.lock:
        account = ex.account(key.uid)
        engine = account.engine
        rows = []
        for seq, fill in reversed(list(enumerate(engine.fills, 1))):
            if symbol and fill.symbol != symbol:
                continue
            if (start and fill.ts < start) or (end and fill.ts > end):
                continue
            meta = account.meta_of(fill.trade_id)
            if params.get("orderId") and meta.order_id != params["orderId"]:
                continue
            if params.get("orderLinkId") and meta.order_link_id != params["orderLinkId"]:
                continue
            order = engine.orders.get(fill.trade_id)
            rows.append(payloads.execution_payload(fill, order, meta, ex.instruments.get(fill.symbol), seq))
        chunk, cursor = _page(rows, params, 50, 100)
    return {"category": "linear", "list": chunk, "nextPageCursor": cursor}


def _positions(ex: SimExchange, key: ApiKey, params: Params) -> object:
    if (empty := _other_category(params)) is not None:
        return empty
    symbol = _symbol(ex, params, required=False)
    settle = params.get("settleCoin") or None
    if symbol is None and settle is None:
        raise BybitError(PARAMS, "params error: symbol or settleCoin is required")
    now = now_ms()
    with ex.lock:
        account = ex.account(key.uid)
        rows = [
            payloads.position_payload(account.engine, s, now, account.seq)
            for s, inst in ex.instruments.items()
            if (symbol is None or s == symbol) and (settle is None or inst.quote_coin == settle)
        ]
    chunk, cursor = _page(rows, params, 20, 200)
    return {"category": "linear", "list": chunk, "nextPageCursor": cursor}


def _wallet(ex: SimExchange, key: ApiKey, params: Params) -> object:
    if params.get("accountType") != "UNIFIED":
        raise BybitError(PARAMS, "accountType only support UNIFIED.")
    with ex.lock:
        wallet = payloads.wallet_payload(ex.account(key.uid).engine)
    coins = [c for c in str(params.get("coin") or "").split(",") if c]
    if coins:
        wallet["coin"] = [c for c in wallet["coin"] if c["coin"] in coins]  # type: ignore[index, attr-defined]
    return {"list": [wallet]}


def _account_info(ex: SimExchange, key: ApiKey, params: Params) -> object:
    return {
        "unifiedMarginStatus": 6,
        "marginMode": "REGULAR_MARGIN",
        "isMasterTrader": False,
        "spotHedgingStatus": "OFF",
        "updatedTime": str(LAUNCH_MS),
        "dcpStatus": "OFF",
        "timeWindow": 10,
        "smpGroup": 0,
    }


def _query_api(ex: SimExchange, key: ApiKey, params: Params) -> object:
    return {
        "id": key.key_id,
        "note": "methtrader sim",
        "apiKey": key.api_key,
        "readOnly": 0,
        "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": [],
            "Wallet": ["AccountTransfer"],
            "Options": [],
            "Derivatives": [],
            "CopyTrading": [],
            "BlockTrade": [],
            "Exchange": [],
            "NFT": [],
            "Affiliate": [],
        },
        "ips": ["*"],
        "type": 1,
        "deadlineDay": -1,
        "expiredAt": "",
        "createdAt": str(key.created_ms),
        "unified": 0,
        "uta": 1,
        "userID": int(key.uid),
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
    }


def _coin_info(ex: SimExchange, key: ApiKey, params: Params) -> object:
    coins = {"USDT": "Tether USDT"}
    for inst in ex.instruments.values():
        coins.setdefault(inst.base_coin, inst.base_coin)
    wanted = params.get("coin")
    rows = []
    for coin, name in coins.items():
        if wanted and wanted != coin:
            continue
        chain = {
            "chainType": coin,
            "confirmation": "1",
            "withdrawFee": "0",
            "depositMin": "0",
            "withdrawMin": "0",
            "chain": coin,
            "chainDeposit": "0",
            "chainWithdraw": "0",
            "minAccuracy": "8",
            "withdrawPercentageFee": "0",
            "contractAddress": "",
        }
        rows.append({"name": name, "coin": coin, "remainAmount": "0", "chains": [chain]})
    return {"rows": rows}


PUBLIC: dict[str, Callable[[SimExchange, Params], object]] = {
    "/v5/market/time": _time,
    "/v5/market/instruments-info": _instruments,
    "/v5/market/kline": _kline,
    "/v5/market/tickers": _tickers,
}

PRIVATE: dict[tuple[str, str], Handler] = {
    ("POST", "/v5/order/create"): _create,
    ("POST", "/v5/order/amend"): _amend,
    ("POST", "/v5/order/cancel"): _cancel,
    ("POST", "/v5/order/cancel-all"): _cancel_all,
    ("GET", "/v5/order/realtime"): _realtime,
    ("GET", "/v5/order/history"): _history,
    ("GET", "/v5/execution/list"): _executions,
    ("GET", "/v5/position/list"): _positions,
    ("GET", "/v5/account/wallet-balance"): _wallet,
    ("GET", "/v5/account/info"): _account_info,
    ("GET", "/v5/user/query-api"): _query_api,
    ("GET", "/v5/asset/coin/query-info"): _coin_info,
}


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _public_route(ex: SimExchange, handler: Callable[[SimExchange, Params], object]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        try:
            result = handler(ex, dict(request.query_params))
        except BybitError as exc:
            return envelope({}, exc.code, exc.message)
        return envelope(result)

    return endpoint


def _private_route(ex: SimExchange, method: str, path: str, handler: Handler) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        now = now_ms()
        if method == "GET":
            payload = request.scope.get("query_string", b"").decode("latin-1")
            params: Params = dict(request.query_params)
        else:
            raw = await request.body()
            payload = raw.decode("utf-8", "replace")
            params = {}
        try:
            key = verify_rest(ex.keys, {k.lower(): v for k, v in request.headers.items()}, payload, now)
        except MissingAuth as exc:
            return envelope({}, exc.code, exc.message, status=401)
        except BybitError as exc:
            return envelope({}, exc.code, exc.message)
        verdict: Verdict = ex.limiter.check_uid(key.uid, path, now)
        headers = verdict.headers()
        if not verdict.allowed:
            return envelope({}, TOO_MANY_VISITS, "Too many visits!", headers)
        try:
            if method == "POST":
                try:
                    params = json.loads(payload) if payload.strip() else {}
                except ValueError as exc:
                    raise BybitError(PARAMS, "params error: request body is not valid JSON") from exc
                if not isinstance(params, dict):
                    raise BybitError(PARAMS, "params error: request body must be a JSON object")
            result = handler(ex, key, params)
        except BybitError as exc:
            return envelope({}, exc.code, exc.message, headers)
        return envelope(result, headers=headers)

    return endpoint


def create_app(exchange: SimExchange) -> FastAPI:
    """The HTTP (and, when available, WebSocket) face of `exchange`; its lifespan runs the replay."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await exchange.start()
        try:
            yield
        finally:
            await exchange.stop()

    app = FastAPI(title="methtrader sim (Bybit V5)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.exchange = exchange

    @app.middleware("http")
    async def ip_limit(request: Request, call_next: Callable[[Request], Any]) -> Response:
        verdict = exchange.limiter.check_ip(_client_ip(request), now_ms())
        if not verdict.allowed:
            return PlainTextResponse("access too frequent", status_code=403, headers=verdict.headers())
        response: Response = await call_next(request)
        if "x-bapi-limit" not in response.headers:
            response.headers.update(verdict.headers())
        return response

    @app.middleware("http")  # added last, so outermost: on every reply, the IP limit's 403 too
    async def instance(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers[INSTANCE_HEADER] = exchange.instance_id
        return response

    for path, handler in PUBLIC.items():
        app.add_api_route(path, _public_route(exchange, handler), methods=["GET"], include_in_schema=False)
    for (method, path), private in PRIVATE.items():
        app.add_api_route(
            path, _private_route(exchange, method, path, private), methods=[method], include_in_schema=False
        )
    register_streams(app, exchange)
    return app
