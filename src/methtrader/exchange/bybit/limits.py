"""Bybit V5 per-UID rate limits: the static table used before the first response, and header parsing.
Limits are requests per rolling 1 s window per UID and endpoint; live headers override the table."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LIMIT_HEADER = "x-bapi-limit"
STATUS_HEADER = "x-bapi-limit-status"
RESET_HEADER = "x-bapi-limit-reset-timestamp"

WINDOW_MS = 1000
"""Bybit's per-UID windows are rolling one-second windows."""

DEFAULT_LIMIT = 10
"""Limit assumed for a private endpoint missing from the table (the most common Bybit limit)."""

IP_LIMIT = 600
IP_WINDOW_MS = 5000
"""Per-IP limit over all endpoints: 600 requests per rolling 5 s, breached → HTTP 403 and a 10+ min ban."""

RETCODE_RATE_LIMITED = 10006
HTTP_IP_BANNED = 403
HTTP_THROTTLED = 429

STATIC_LIMITS: Mapping[str, int] = {
    "/v5/order/create": 10,
    "/v5/order/amend": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
    "/v5/order/create-batch": 10,
    "/v5/order/amend-batch": 10,
    "/v5/order/cancel-batch": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/account/info": 50,
    "/v5/asset/coin/query-info": 5,
}
"""Requests per second per UID, the default (linear/inverse/option) category where it matters."""

CATEGORY_LIMITS: Mapping[tuple[str, str], int] = {
    ("/v5/order/create", "spot"): 20,
}
"""Category-specific limits; such endpoints are budgeted separately per category."""

BATCH_ENDPOINTS: frozenset[str] = frozenset(
    {"/v5/order/create-batch", "/v5/order/amend-batch", "/v5/order/cancel-batch"}
)
"""Batch endpoints count every order of the batch against the endpoint's limit."""

ORDER_ENDPOINTS: frozenset[str] = frozenset(
    {"/v5/order/create", "/v5/order/amend", "/v5/order/create-batch", "/v5/order/amend-batch"}
)
"""Endpoints that open or change risk (refused during an IP ban); cancels are not among them."""

UNLIMITED_PREFIXES: tuple[str, ...] = ("/v5/market/",)
"""Public market data has no per-UID limit; only the IP limit applies."""

_ID_SEGMENT = re.compile(r"^(?:\d+|[0-9a-fA-F-]{16,}|[0-9a-fA-F]{8}-[0-9a-fA-F-]+)$")


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One response's rate-limit headers: the endpoint's limit, requests remaining, reset time.
    Any field is None when its header was missing or garbled; reset_ms is epoch milliseconds."""

    limit: int | None
    remaining: int | None
    reset_ms: int | None

    @property
    def utilisation(self) -> float | None:
        """1 − remaining/limit, or None without both values."""
        if not self.limit or self.remaining is None:
            return None
        return min(1.0, max(0.0, 1.0 - self.remaining / self.limit))


def normalise_endpoint(path: str) -> str:
    """The bare request path: no scheme/host/query, lower case, no trailing slash, ids as ':id'.
    Safe as a metrics label and as a budget key (never carries order ids or symbols)."""
    raw = path.strip()
    if "://" in raw:
        raw = urlsplit(raw).path
    raw = raw.split("?", 1)[0].split("#", 1)[0]
    segments = [s for s in raw.split("/") if s]
    cleaned = [":id" if _ID_SEGMENT.match(s) else s.lower() for s in segments]
    return "/" + "/".join(cleaned)


def _category(category: str | None) -> str | None:
    return category.strip().lower() if category else None


def static_limit(path: str, category: str | None = None) -> int | None:
    """Requests per second per UID for an endpoint before any response was seen; None = IP limit only.
    Without a category the strictest category's limit is returned."""
    endpoint = normalise_endpoint(path)
    if endpoint.startswith(UNLIMITED_PREFIXES):
        return None
    cat = _category(category)
    if cat is not None and (endpoint, cat) in CATEGORY_LIMITS:
        return CATEGORY_LIMITS[(endpoint, cat)]
    return STATIC_LIMITS.get(endpoint, DEFAULT_LIMIT)


def budget_key(path: str, category: str | None = None) -> str:
    """The key one budget is counted under: the path, plus the category for category-specific limits.
    Endpoints whose limit does not depend on the category share one budget across categories."""
    endpoint = normalise_endpoint(path)
    cat = _category(category)
    if cat is not None and any(p == endpoint for p, _ in CATEGORY_LIMITS):
        return f"{endpoint}|{cat}"
    return endpoint


def is_order_endpoint(path: str) -> bool:
    """True for endpoints that create or amend orders (blocked during an IP ban)."""
    return normalise_endpoint(path) in ORDER_ENDPOINTS


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        k = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if k.strip().lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _non_negative_int(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.split(",", 1)[0].strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def parse_limit_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> LimitStatus | None:
    """Read X-Bapi-Limit, X-Bapi-Limit-Status and X-Bapi-Limit-Reset-Timestamp (case-insensitive).
    Garbled or missing values become None; returns None when none of the three is usable."""
    if headers is None:
        return None
    limit = _non_negative_int(_header(headers, LIMIT_HEADER))
    remaining = _non_negative_int(_header(headers, STATUS_HEADER))
    reset_ms = _non_negative_int(_header(headers, RESET_HEADER))
    if limit == 0:
        limit = None
    if limit is not None and remaining is not None and remaining > limit:
        remaining = limit
    if reset_ms is not None:
        if reset_ms == 0:
            reset_ms = None
        elif reset_ms < 100_000_000_000:  # ten digits: seconds, not milliseconds
            reset_ms *= 1000
    if limit is None and remaining is None and reset_ms is None:
        return None
    return LimitStatus(limit=limit, remaining=remaining, reset_ms=reset_ms)
