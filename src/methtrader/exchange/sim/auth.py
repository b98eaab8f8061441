"""Bybit V5 request signing, verified against the raw query string or raw body as received."""

import hashlib
import hmac

from methtrader.exchange.sim.errors import BAD_SIGN, INVALID_KEY, PARAMS, TIMESTAMP, BybitError
from methtrader.exchange.sim.keys import ApiKey, KeyStore

DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000


class MissingAuth(BybitError):
    """Auth headers absent: Bybit answers HTTP 401 with its envelope, 10003 when there is no key."""


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def verify_rest(keys: KeyStore, headers: dict[str, str], payload: str, now_ms: int) -> ApiKey:
    """Check X-BAPI-* headers (keys lower-case) against `payload` (raw query or body)."""
    api_key = headers.get("x-bapi-api-key")
    timestamp = headers.get("x-bapi-timestamp")
    signature = headers.get("x-bapi-sign")
    if not api_key:
        raise MissingAuth(INVALID_KEY, "API key is invalid.")
    if not timestamp or not signature:
        raise MissingAuth(BAD_SIGN, "error sign! X-BAPI-TIMESTAMP and X-BAPI-SIGN are required")
    key = keys.get(api_key)
    if key is None:
        raise BybitError(INVALID_KEY, "API key is invalid.")
    recv_raw = headers.get("x-bapi-recv-window")
    try:
        ts = int(timestamp)
        recv_window = int(recv_raw) if recv_raw else DEFAULT_RECV_WINDOW
    except ValueError as exc:
        raise BybitError(PARAMS, "params error: X-BAPI-TIMESTAMP/X-BAPI-RECV-WINDOW invalid") from exc
    if not (now_ms - recv_window <= ts < now_ms + FUTURE_TOLERANCE_MS):
        raise BybitError(
            TIMESTAMP,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{recv_window}]",
        )
    origin = f"{timestamp}{api_key}{recv_raw or ''}{payload}"
    expected = sign(key.api_secret, origin)
    if not hmac.compare_digest(expected, signature.lower()):
        raise BybitError(BAD_SIGN, f"error sign! origin_string[{origin}]")
    return key


def verify_ws(keys: KeyStore, args: list[object], now_ms: int) -> ApiKey | None:
    """WebSocket auth op: args = [apiKey, expires, signature of "GET/realtime" + expires]."""
    if len(args) != 3:
        return None
    api_key, expires, signature = (str(a) for a in args)
    key = keys.get(api_key)
    if key is None:
        return None
    try:
        if int(expires) <= now_ms:
            return None
    except ValueError:
        return None
    expected = sign(key.api_secret, f"GET/realtime{expires}")
    return key if hmac.compare_digest(expected, signature.lower()) else None
