"""Bybit V5 error codes the simulator answers with, and the map from engine rejections to them.

| retCode | retMsg                                   | when                                           |
|---------|------------------------------------------|------------------------------------------------|
| 10001   | params error: ...                        | missing/invalid parameter, unknown symbol, bad |
|         |                                          | qty/price, PostOnly market order               |
| 10002   | invalid request, please check your ...   | timestamp outside the recv_window              |
| 10003   | API key is invalid.                      | unknown or missing api key (missing: HTTP 401) |
| 10004   | error sign! origin_string[...]           | signature mismatch; timestamp or sign header   |
|         |                                          | missing (HTTP 401)                             |
| 10006   | Too many visits!                         | per-UID endpoint rate limit breached           |
| 110001  | Order does not exist                     | cancel/amend of an unknown or closed order     |
| 110007  | ab not enough for new order              | insufficient available balance                 |
| 110017  | Reduce-only rule not satisfied           | reduce-only order would increase the position  |
| 110072  | OrderLinkedID is duplicate               | orderLinkId used before on this account        |
| 110094  | Order does not meet minimum order value  | notional below the instrument's minimum        |
| 110025  | not modified                             | amend that changes nothing                     |
| (HTTP 403) access too frequent                     | per-IP limit (600 requests / 5 s) breached     |

A PostOnly order that would take liquidity is accepted (retCode 0) and then shows as Cancelled
with rejectReason EC_PostOnlyWillTakeLiquidity, as on Bybit.
"""


class BybitError(Exception):
    """An error reply: HTTP 200 with Bybit's envelope carrying a non-zero retCode."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


PARAMS = 10001
TIMESTAMP = 10002
INVALID_KEY = 10003
BAD_SIGN = 10004
TOO_MANY_VISITS = 10006
ORDER_NOT_FOUND = 110001
INSUFFICIENT_BALANCE = 110007
REDUCE_ONLY = 110017
NOT_MODIFIED = 110025
DUPLICATE_LINK_ID = 110072
MIN_NOTIONAL = 110094

# engine reject reason -> (retCode, retMsg)
REJECTIONS: dict[str, tuple[int, str]] = {
    "duplicate_order_link_id": (DUPLICATE_LINK_ID, "OrderLinkedID is duplicate"),
    "insufficient_available_balance": (INSUFFICIENT_BALANCE, "ab not enough for new order"),
    "reduce_only_would_increase": (REDUCE_ONLY, "Reduce-only rule not satisfied"),
    "notional_below_minimum": (MIN_NOTIONAL, "Order does not meet minimum order value"),
    "unknown_symbol": (PARAMS, "params error: symbol invalid"),
    "no_market_data": (PARAMS, "params error: no market data yet"),
    "limit_without_price": (PARAMS, "params error: price is required for Limit orders"),
    "post_only_market_order": (PARAMS, "params error: PostOnly is for Limit orders only"),
    "qty_not_positive": (PARAMS, "params error: qty invalid"),
    "qty_below_minimum": (PARAMS, "params error: qty below the minimum order qty"),
    "price_not_positive": (PARAMS, "params error: price invalid"),
}


def rejection(reason: str, detail: str = "") -> BybitError:
    code, message = REJECTIONS.get(reason, (PARAMS, f"params error: {reason}"))
    return BybitError(code, message)
