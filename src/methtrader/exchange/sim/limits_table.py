"""Bybit's rate limits: per UID and endpoint in rolling 1-s windows, and a per-IP ceiling.

The numbers are Bybit's published V5 limits for linear contracts; pass overrides (tests lower
them) through `RateLimits(per_uid={...}, ip_limit=..., ...)`.
"""

import threading
from collections import deque
from dataclasses import dataclass, field

DEFAULT_UID_LIMITS: dict[str, int] = {
    "/v5/order/create": 10,
    "/v5/order/amend": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/account/info": 50,
    "/v5/user/query-api": 50,
    "/v5/asset/coin/query-info": 5,
}


@dataclass
class RateLimits:
    per_uid: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_UID_LIMITS))
    default_uid_limit: int = 50
    window_ms: int = 1000
    ip_limit: int = 600
    ip_window_ms: int = 5000
    ip_ban_ms: int = 600_000

    def limit_for(self, path: str) -> int:
        return self.per_uid.get(path, self.default_uid_limit)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return {
            "X-Bapi-Limit": str(self.limit),
            "X-Bapi-Limit-Status": str(self.remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(self.reset_ms),
        }


class _Window:
    """Timestamps of accepted requests within the last window (rolling)."""

    __slots__ = ("hits",)

    def __init__(self) -> None:
        self.hits: deque[int] = deque()

    def take(self, now: int, limit: int, window: int) -> Verdict:
        hits = self.hits
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return Verdict(False, limit, 0, hits[0] + window)
        hits.append(now)
        return Verdict(True, limit, limit - len(hits), now if len(hits) < limit else hits[0] + window)


class RateLimiter:
    """Thread-safe counters; `check_uid` for signed endpoints, `check_ip` for every request."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._lock = threading.Lock()
        self._uid: dict[tuple[str, str], _Window] = {}
        self._ip: dict[str, _Window] = {}
        self._banned: dict[str, int] = {}

    def check_uid(self, uid: str, path: str, now: int) -> Verdict:
        limits = self.limits
        with self._lock:
            window = self._uid.setdefault((uid, path), _Window())
            return window.take(now, limits.limit_for(path), limits.window_ms)

    def check_ip(self, ip: str, now: int) -> Verdict:
        limits = self.limits
        with self._lock:
            until = self._banned.get(ip)
            if until is not None:
                if now < until:
                    return Verdict(False, limits.ip_limit, 0, until)
                del self._banned[ip]
            verdict = self._ip.setdefault(ip, _Window()).take(now, limits.ip_limit, limits.ip_window_ms)
            if not verdict.allowed and limits.ip_ban_ms > 0:
                self._banned[ip] = now + limits.ip_ban_ms
                return Verdict(False, limits.ip_limit, 0, now + limits.ip_ban_ms)
            return verdict
