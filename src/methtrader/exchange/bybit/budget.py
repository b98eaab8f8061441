"""Sliding-window request budgets shared by everything that trades one Bybit account (UID).
InMemoryBudget serves one process; RedisBudget makes the same reservation atomically in a Lua script."""

# Design. A budget keeps, per key, one entry per request whose score is an upper bound of the moment
# the exchange received it: a placeholder (send time + in-flight timeout) while the request is in
# flight, the response time once it completed. A request may be sent at ``now`` when fewer than
# ``limit - cost + 1`` entries score above ``now - window``. As every score bounds the true arrival
# from above, no ``window`` span of arrivals at the exchange ever holds more than ``limit`` requests,
# whatever the latency. When the budget is full the caller waits until the (limit - cost + 1)-th
# largest score leaves the window; if that entry is still in flight its final score will be at least
# ``now``, so ``window`` is a tight lower bound of the wait.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

RETENTION_WINDOWS = 2
"""Entries are kept this many windows so that header reconciliation can count a past window."""


@dataclass(frozen=True, slots=True)
class Window:
    """One rolling-window constraint: at most ``limit`` request units per ``window_ms`` under ``key``.
    ``cost`` is how many units this request takes (batch endpoints count every order)."""

    key: str
    limit: int
    window_ms: float
    cost: int = 1


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a reservation: granted, or how long to wait before asking again.
    ``wait_ms`` is a lower bound of the real wait; re-asking after it is always worthwhile."""

    granted: bool
    wait_ms: float = 0.0


class Budget(Protocol):
    """Where reservations live: in this process (InMemoryBudget) or in Redis (RedisBudget)."""

    async def reserve(
        self, windows: Sequence[Window], token: str, now_ms: float, pending_until_ms: float
    ) -> Decision:
        """Atomically reserve ``token`` in every window, or reserve nothing and say how long to wait."""
        ...

    async def complete(self, windows: Sequence[Window], token: str, done_ms: float) -> None:
        """Replace ``token``'s in-flight placeholder by its response time (a tighter upper bound)."""
        ...

    async def block(self, key: str, until_ms: float, now_ms: float) -> None:
        """Refuse every reservation under ``key`` before ``until_ms`` (kept if already later)."""
        ...

    async def reconcile(self, window: Window, used: int, since_ms: float, now_ms: float, token: str) -> int:
        """Add phantom entries (scored ``now_ms``) until ``used`` entries score above ``since_ms``.
        Returns how many were added: requests the exchange counted that this budget never saw."""
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...


def _member(token: str, unit: int) -> str:
    return f"{token}#{unit}"


class InMemoryBudget:
    """A budget in this process only; share one instance between the governors of one process.
    Each key holds ``member -> score``; operations are atomic because they never await."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, float]] = {}
        self._blocked: dict[str, float] = {}

    def _scores(self, window: Window, now_ms: float) -> dict[str, float]:
        entries = self._entries.setdefault(window.key, {})
        horizon = now_ms - RETENTION_WINDOWS * window.window_ms
        stale = [m for m, s in entries.items() if s <= horizon]
        for member in stale:
            del entries[member]
        return entries

    async def reserve(
        self, windows: Sequence[Window], token: str, now_ms: float, pending_until_ms: float
    ) -> Decision:
        wait = 0.0
        for window in windows:
            until = self._blocked.get(window.key, 0.0)
            if until > now_ms:
                wait = max(wait, until - now_ms)
            entries = self._scores(window, now_ms)
            start = now_ms - window.window_ms
            live = sorted((s for s in entries.values() if s > start), reverse=True)
            if len(live) + window.cost > window.limit:
                blocker = live[window.limit - window.cost]
                need = window.window_ms if blocker > now_ms else blocker + window.window_ms - now_ms
                wait = max(wait, need)
        if wait > 0:
            return Decision(False, wait)
        for window in windows:
            entries = self._entries[window.key]
            for unit in range(window.cost):
                entries[_member(token, unit)] = pending_until_ms
        return Decision(True)

    async def complete(self, windows: Sequence[Window], token: str, done_ms: float) -> None:
        for window in windows:
            entries = self._entries.get(window.key, {})
            for unit in range(window.cost):
                member = _member(token, unit)
                if member in entries:
                    entries[member] = done_ms

    async def block(self, key: str, until_ms: float, now_ms: float) -> None:
        if until_ms > self._blocked.get(key, 0.0):
            self._blocked[key] = until_ms

    async def reconcile(self, window: Window, used: int, since_ms: float, now_ms: float, token: str) -> int:
        entries = self._scores(window, now_ms)
        seen = sum(1 for s in entries.values() if s > since_ms)
        missing = max(0, min(used, window.limit) - seen)
        for unit in range(missing):
            entries[_member(token, unit)] = now_ms
        return missing

    async def close(self) -> None:
        return None


# KEYS: per window, its sorted set then its block key. ARGV: now, token, placeholder score,
# retention multiple, then per window: limit, window_ms, cost. Returns {granted, wait_ms as string}.
RESERVE_LUA = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
local pending = tonumber(ARGV[3])
local retention = tonumber(ARGV[4])
local n = #KEYS / 2
local wait = 0
for i = 1, n do
  local zset, block = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 4 + 3 * (i - 1)
  local limit, window, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local blocked = tonumber(redis.call('GET', block) or '0')
  if blocked > now and blocked - now > wait then wait = blocked - now end
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', now - retention * window)
  local used = redis.call('ZCOUNT', zset, '(' .. (now - window), '+inf')
  if used + cost > limit then
    local entry = redis.call('ZREVRANGE', zset, limit - cost, limit - cost, 'WITHSCORES')
    local score = tonumber(entry[2])
    local need = score + window - now
    if score > now then need = window end
    if need > wait then wait = need end
  end
end
if wait > 0 then return {0, tostring(wait)} end
for i = 1, n do
  local zset = KEYS[2 * i - 1]
  local base = 4 + 3 * (i - 1)
  local window, cost = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  for unit = 0, cost - 1 do
    redis.call('ZADD', zset, pending, token .. '#' .. unit)
  end
  redis.call('PEXPIRE', zset, math.ceil(pending - now + retention * window + 1000))
end
return {1, '0'}
"""

# KEYS: the block key. ARGV: until_ms, now_ms. Keeps the later of the old and the new deadline.
BLOCK_LUA = """
local until_ms = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current and until_ms > now then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', math.ceil(until_ms - now + 1000))
  return 1
end
return 0
"""

# KEYS: the sorted set. ARGV: used, since_ms, now_ms, token, limit, window_ms, retention.
RECONCILE_LUA = """
local used = tonumber(ARGV[1])
local since = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local token = ARGV[4]
local limit = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local retention = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - retention * window)
local seen = redis.call('ZCOUNT', KEYS[1], '(' .. since, '+inf')
local missing = math.min(used, limit) - seen
if missing <= 0 then return 0 end
for unit = 0, missing - 1 do
  redis.call('ZADD', KEYS[1], now, token .. '#' .. unit)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(retention * window + 1000))
return missing
"""


def _num(value: float) -> str:
    return f"{value:.3f}"


class RedisBudget:
    """A budget in Redis shared by every process trading one UID; each operation is one Lua call.
    Keys are ``{namespace}:{{uid}}:{budget key}`` (one hash slot per UID); clocks must agree (NTP)."""

    def __init__(
        self, client: Redis, *, uid: str = "default", namespace: str = "methtrader:bybit:rl"
    ) -> None:
        self._client = client
        self._prefix = f"{namespace}:{{{uid}}}"
        self._reserve = client.register_script(RESERVE_LUA)
        self._block = client.register_script(BLOCK_LUA)
        self._reconcile = client.register_script(RECONCILE_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        uid: str = "default",
        namespace: str = "methtrader:bybit:rl",
        timeout_s: float = 0.25,
    ) -> RedisBudget:
        """A budget on its own connection pool to ``url``; short timeouts and one retry, so that a
        sick Redis costs at most ~2 x ``timeout_s`` before the governor paces locally."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, uid=uid, namespace=namespace)

    def redis_key(self, key: str) -> str:
        """The sorted set holding ``key``'s entries."""
        return f"{self._prefix}:{key}"

    async def reserve(
        self, windows: Sequence[Window], token: str, now_ms: float, pending_until_ms: float
    ) -> Decision:
        keys: list[str] = []
        args: list[str | int] = [_num(now_ms), token, _num(pending_until_ms), RETENTION_WINDOWS]
        for window in windows:
            keys += [self.redis_key(window.key), self.redis_key(window.key) + ":block"]
            args += [window.limit, _num(window.window_ms), window.cost]
        granted, wait = await self._reserve(keys=keys, args=args)
        if int(granted):
            return Decision(True)
        return Decision(False, float(wait))

    async def complete(self, windows: Sequence[Window], token: str, done_ms: float) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for window in windows:
                members = {_member(token, unit): done_ms for unit in range(window.cost)}
                pipe.zadd(self.redis_key(window.key), members, xx=True)
            await pipe.execute()

    async def block(self, key: str, until_ms: float, now_ms: float) -> None:
        await self._block(keys=[self.redis_key(key) + ":block"], args=[_num(until_ms), _num(now_ms)])

    async def reconcile(self, window: Window, used: int, since_ms: float, now_ms: float, token: str) -> int:
        args = [used, _num(since_ms), _num(now_ms), token, window.limit, _num(window.window_ms)]
        added = await self._reconcile(keys=[self.redis_key(window.key)], args=[*args, RETENTION_WINDOWS])
        return int(added)

    async def close(self) -> None:
        await self._client.aclose()
