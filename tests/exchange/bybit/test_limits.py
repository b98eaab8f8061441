"""Bybit's static limit table, endpoint normalisation and rate-limit header parsing."""

import httpx
import pytest

from methtrader.exchange.bybit.limits import (
    DEFAULT_LIMIT,
    LimitStatus,
    budget_key,
    is_order_endpoint,
    normalise_endpoint,
    parse_limit_headers,
    static_limit,
)


@pytest.mark.parametrize(
    ("path", "category", "expected"),
    [
        ("/v5/order/create", "linear", 10),
        ("/v5/order/create", "spot", 20),
        ("/v5/order/create", None, 10),
        ("/v5/order/cancel", "spot", 10),
        ("/v5/order/cancel-all", "linear", 10),
        ("/v5/order/create-batch", "linear", 10),
        ("/v5/order/realtime", None, 50),
        ("/v5/order/history", None, 50),
        ("/v5/execution/list", None, 50),
        ("/v5/position/list", "linear", 50),
        ("/v5/account/wallet-balance", None, 50),
        ("/v5/account/info", None, 50),
        ("/v5/asset/coin/query-info", None, 5),
        ("/v5/user/query-api", None, DEFAULT_LIMIT),
        ("/v5/market/kline", "linear", None),
        ("https://api.bybit.com/v5/order/create?category=spot", "Spot", 20),
    ],
)
def test_static_table(path: str, category: str | None, expected: int | None) -> None:
    assert static_limit(path, category) == expected


def test_normalise_endpoint_strips_host_query_and_ids() -> None:
    assert normalise_endpoint("https://api.bybit.com/v5/order/create?symbol=BTCUSDT") == "/v5/order/create"
    assert normalise_endpoint("/V5/Order/Realtime/") == "/v5/order/realtime"
    assert normalise_endpoint("/v5/order/1234567890") == "/v5/order/:id"
    assert normalise_endpoint("/v5/x/5f1e2d3c-4b5a-6978-8899-aabbccddeeff/y") == "/v5/x/:id/y"
    assert normalise_endpoint("/v5/order/cancel-all") == "/v5/order/cancel-all"


def test_budget_key_separates_categories_only_where_limits_differ() -> None:
    assert budget_key("/v5/order/create", "spot") != budget_key("/v5/order/create", "linear")
    assert budget_key("/v5/order/cancel", "spot") == budget_key("/v5/order/cancel", "linear")
    assert budget_key("/v5/order/cancel?x=1") == "/v5/order/cancel"
    assert is_order_endpoint("/v5/order/create") and is_order_endpoint("/v5/order/amend")
    assert not is_order_endpoint("/v5/order/cancel") and not is_order_endpoint("/v5/order/cancel-all")


def test_parse_headers_any_case_and_container() -> None:
    raw = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "7", "X-Bapi-Limit-Reset-Timestamp": "1672738134824"}
    expected = LimitStatus(10, 7, 1672738134824)
    assert parse_limit_headers(raw) == expected
    assert parse_limit_headers({k.lower(): v for k, v in raw.items()}) == expected
    assert parse_limit_headers(httpx.Headers(raw)) == expected
    assert parse_limit_headers([(k.encode(), v.encode()) for k, v in raw.items()]) == expected
    assert expected.utilisation == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
        ({"X-Bapi-Limit": "abc", "X-Bapi-Limit-Status": "", "X-Bapi-Limit-Reset-Timestamp": "nan"}, None),
        ({"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "-3"}, LimitStatus(10, None, None)),
        ({"X-Bapi-Limit": "inf", "X-Bapi-Limit-Status": "4"}, LimitStatus(None, 4, None)),
        ({"X-Bapi-Limit": "0", "X-Bapi-Limit-Status": "0"}, LimitStatus(None, 0, None)),
        ({"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "25"}, LimitStatus(10, 10, None)),
        ({"X-Bapi-Limit": " 20 ", "X-Bapi-Limit-Status": "5.0"}, LimitStatus(20, 5, None)),
        ({"X-Bapi-Limit": "10, 10", "X-Bapi-Limit-Status": "9"}, LimitStatus(10, 9, None)),
        (
            {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "1672738134"},
            LimitStatus(None, 0, 1672738134000),
        ),
        ({"X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": "0"}, LimitStatus(10, None, None)),
    ],
)
def test_parse_headers_tolerates_garbage(
    headers: dict[str, str] | None, expected: LimitStatus | None
) -> None:
    assert parse_limit_headers(headers) == expected


def test_utilisation_needs_both_values() -> None:
    assert LimitStatus(None, 3, None).utilisation is None
    assert LimitStatus(10, None, None).utilisation is None
    assert LimitStatus(10, 0, None).utilisation == 1.0
