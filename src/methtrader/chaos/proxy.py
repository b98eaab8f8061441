"""A loopback fault-injection TCP proxy: latency, resets, black-holes, slow closes and bandwidth
limits between a client and one upstream, per connection kind (REST, or a WebSocket path).

Toxiproxy cannot be installed here, and the faults a trader must survive are network faults seen by
a separate process (`methtrader run --sim-url http://127.0.0.1:<proxy port>`), so this is a small
asyncio proxy usable from async tests (`async with FaultProxy(...)`) and sync ones (`with`, which runs
its own event loop in a daemon thread).

Each client connection is classified by sniffing its first request: `GET /v5/private HTTP/1.1` with
`Upgrade: websocket` is kind "websocket" with path "/v5/private", any other HTTP request is "rest",
anything else (or silence for `sniff_timeout`) is "other". A fault applies to the connections its
`Selector` matches (kind, path prefix, predicate; none of them: every connection), both those already
open and those opened while it is active, so one private stream can be cut while REST keeps working:

    with FaultProxy("127.0.0.1", sim_port) as proxy:
        run_trader(f"--sim-url {proxy.url}")
        cut = proxy.cut(kind="websocket", path_prefix="/v5/private", duration=30)
        ...                      # existing private sockets got an RST; reconnects are reset too
        proxy.timeline           # start/stop events with monotonic and wall timestamps

Black-holed bytes are held, not dropped (a partition that heals before TCP gives up), so the byte
stream stays intact and resumes on `heal()` / `clear()`. A keep-alive REST connection is classified
by its first request only: path selectors are exact for WebSockets, `kind="rest"` for REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

log = logging.getLogger(__name__)

Direction = Literal["up", "down", "both"]
"""up: client → upstream (requests), down: upstream → client (responses, stream data)."""

REST = "rest"
WEBSOCKET = "websocket"
OTHER = "other"
PENDING = "pending"  # accepted, first request not sniffed yet
KINDS = (REST, WEBSOCKET, OTHER)

_CHUNK = 65536
_QUEUE_CHUNKS = 64
_SNIFF_LIMIT = 16384
_WAKE_S = 0.25  # held pumps re-check their faults at least this often (a lost wake-up costs no more)
_METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_DIRECTIONS = ("up", "down", "both")


# ---------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class ConnInfo:
    """What the proxy knows of one client connection: its kind and first request, for selectors
    and reports; `kind` is "pending" until the first request has been sniffed."""

    id: int
    kind: str
    method: str | None
    path: str | None
    peer: str
    opened_monotonic: float


@dataclass(frozen=True)
class Selector:
    """Which connections a fault applies to: all conditions given must hold; none given selects
    every connection (also those still being sniffed)."""

    kind: str | None = None
    path_prefix: str | None = None
    match: Callable[[ConnInfo], bool] | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def everything(self) -> bool:
        return self.kind is None and self.path_prefix is None and self.match is None

    def matches(self, info: ConnInfo) -> bool:
        if info.kind == PENDING:
            return self.everything
        if self.kind is not None and info.kind != self.kind:
            return False
        if self.path_prefix is not None and not (info.path or "").startswith(self.path_prefix):
            return False
        return self.match is None or bool(self.match(info))

    def __str__(self) -> str:
        if self.everything:
            return "all"
        parts = [self.kind or "any", f"{self.path_prefix}*" if self.path_prefix else ""]
        if self.match is not None:
            parts.append(f"match={getattr(self.match, '__name__', 'predicate')}")
        return " ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------- faults
def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, not {direction!r}")


@dataclass(frozen=True)
class Latency:
    """Each chunk is delivered `delay` ± uniform `jitter` seconds after it was read, in order, in
    `direction` ("both": each way, so a request/response round trip gains twice the delay)."""

    delay: float
    jitter: float = 0.0
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("latency delay and jitter must be >= 0")
        _check_direction(self.direction)

    def __str__(self) -> str:
        jitter = f"±{self.jitter:g}" if self.jitter else ""
        return f"latency {self.delay:g}{jitter}s {self.direction}"


@dataclass(frozen=True)
class Reset:
    """Connections are closed with an RST (SO_LINGER 0) on both sides: at once (`now`), every
    `every` seconds, after `after_bytes` more bytes either way; `refuse_new` resets new ones too."""

    now: bool = True
    every: float | None = None
    after_bytes: int | None = None
    refuse_new: bool = False

    def __post_init__(self) -> None:
        if self.every is not None and self.every <= 0:
            raise ValueError("reset every must be > 0 seconds")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError("reset after_bytes must be >= 0")

    def __str__(self) -> str:
        parts = ["reset"]
        if self.now:
            parts.append("now")
        if self.every is not None:
            parts.append(f"every {self.every:g}s")
        if self.after_bytes is not None:
            parts.append(f"after {self.after_bytes}B")
        if self.refuse_new:
            parts.append("refuse-new")
        return " ".join(parts)


@dataclass(frozen=True)
class BlackHole:
    """Connections stay open but nothing is forwarded in `direction` (bytes are held, not lost);
    new ones are accepted and held too, or reset at once with `refuse_new`."""

    refuse_new: bool = False
    direction: Direction = "both"

    def __post_init__(self) -> None:
        _check_direction(self.direction)

    def __str__(self) -> str:
        return f"blackhole {self.direction}" + (" refuse-new" if self.refuse_new else "")


@dataclass(frozen=True)
class SlowClose:
    """A close (FIN) from either side reaches the other side only `delay` seconds later."""

    delay: float

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("slow close delay must be >= 0")

    def __str__(self) -> str:
        return f"slow-close {self.delay:g}s"


@dataclass(frozen=True)
class Bandwidth:
    """At most `bytes_per_s` bytes a second are forwarded in `direction` (each way for "both")."""

    bytes_per_s: float
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.bytes_per_s <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s")
        _check_direction(self.direction)

    def __str__(self) -> str:
        return f"bandwidth {self.bytes_per_s:g}B/s {self.direction}"


Fault = Latency | Reset | BlackHole | SlowClose | Bandwidth


@dataclass(frozen=True)
class FaultEvent:
    """One entry of the proxy's timeline: a fault started or stopped (reason: injected, healed,
    expired, cleared), stamped on the monotonic clock (for durations) and the wall clock (for logs)."""

    action: Literal["start", "stop"]
    fault_id: int
    label: str
    reason: str
    monotonic: float
    wall: float


class ActiveFault:
    """A fault in effect on a proxy, as returned by `FaultProxy.fault()` and its shortcuts: `heal()`
    ends it (idempotent); as a context manager it heals on exit."""

    def __init__(
        self, proxy: FaultProxy, fault_id: int, spec: Fault, selector: Selector, duration: float | None
    ) -> None:
        self.proxy = proxy
        self.id = fault_id
        self.spec = spec
        self.selector = selector
        self.duration = duration
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()
        self.ends_monotonic = None if duration is None else self.started_monotonic + duration
        self.healed_monotonic: float | None = None
        self.label = f"{spec} [{selector}]" + ("" if duration is None else f" for {duration:g}s")
        self._baselines: dict[int, int] = {}  # after_bytes: a connection's byte count when the fault began
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.healed_monotonic is None

    def heal(self) -> bool:
        """End the fault now; False when it had already ended."""
        return self.proxy._heal(self, "healed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()

    def __repr__(self) -> str:
        return f"<ActiveFault #{self.id} {self.label}{'' if self.active else ' (healed)'}>"


@dataclass(frozen=True)
class ProxyStats:
    """Counters since the proxy was made, per connection kind: accepted, refused (reset by a
    refuse-new fault), open now, reset by a fault, bytes up (client → upstream) and down.
    Kind "pending" counts connections refused (or open) before their first request was sniffed."""

    accepted: dict[str, int]
    refused: dict[str, int]
    open: dict[str, int]
    resets: dict[str, int]
    bytes_up: dict[str, int]
    bytes_down: dict[str, int]
    upstream_errors: int

    @property
    def resets_sent(self) -> int:
        return sum(self.resets.values())

    @property
    def total_bytes_up(self) -> int:
        return sum(self.bytes_up.values())

    @property
    def total_bytes_down(self) -> int:
        return sum(self.bytes_down.values())


# ---------------------------------------------------------------------------------------- plumbing
def _kind_counter() -> dict[str, int]:
    return dict.fromkeys((*KINDS, PENDING), 0)


def _abort(writer: asyncio.StreamWriter | None, rst: bool) -> None:
    """Close a socket at once; with `rst`, SO_LINGER 0 makes the kernel send an RST, not a FIN."""
    if writer is None or (writer.transport.is_closing() and not rst):
        return
    if rst:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _could_be_http(buf: bytes) -> bool:
    head, space, _ = buf.partition(b" ")
    if space:
        return head in _METHODS
    return len(head) <= 7 and any(m.startswith(head) for m in _METHODS)


def classify(first: bytes) -> tuple[str, str | None, str | None]:
    """(kind, method, path) of a connection from the bytes its client sent first."""
    if not first or not _could_be_http(first):
        return OTHER, None, None
    head = first.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return OTHER, None, None
    method, target = parts[0], parts[1]
    if "://" in target:  # absolute form: http://host:port/path
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path = target.split("?", 1)[0]
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "upgrade" and "websocket" in value.lower():
            return WEBSOCKET, method, path
    return REST, method, path


class _Conn:
    def __init__(self, conn_id: int, client: asyncio.StreamWriter) -> None:
        peer = client.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.info = ConnInfo(conn_id, PENDING, None, None, where, time.monotonic())
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.bytes = {"up": 0, "down": 0}
        self.last_at = {"up": 0.0, "down": 0.0}
        self.task: asyncio.Task[Any] | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.closed = False

    @property
    def total(self) -> int:
        return self.bytes["up"] + self.bytes["down"]


# ---------------------------------------------------------------------------------------- the proxy
class FaultProxy:
    """A TCP proxy on `listen_host:listen_port` (0: a free port) to `upstream_host:upstream_port`
    whose faults can be changed at any time from any thread; see the module docstring."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        sniff_timeout: float = 0.5,
        connect_timeout: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.port = listen_port
        self.sniff_timeout = sniff_timeout
        self.connect_timeout = connect_timeout
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._faults: list[ActiveFault] = []
        self._timeline: list[FaultEvent] = []
        self._conns: dict[int, _Conn] = {}
        self._conn_ids = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self._accepted = _kind_counter()
        self._refused = _kind_counter()
        self._resets = _kind_counter()
        self._bytes = {"up": _kind_counter(), "down": _kind_counter()}
        self._upstream_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._changed: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.listen_host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ async lifecycle
    async def start(self) -> Self:
        """Listen on the running event loop; `port` is the bound port afterwards (kept on restart)."""
        if self._server is not None:
            raise RuntimeError("the proxy is already running")
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(
            self._on_client, self.listen_host, self.listen_port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.listen_port = self.port  # a restart comes back on the same address
        for handle in self.faults():  # faults injected before start: arm their timers and tasks now
            self._arm(handle)
        return self

    async def stop(self) -> None:
        """Stop listening and close every proxied connection (a FIN, not an RST); faults stay set."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with self._lock:
            conns = list(self._conns.values())
            for handle in self._faults:
                self._disarm(handle)
        tasks = []
        for conn in conns:
            conn.closed = True
            _abort(conn.client, rst=False)
            _abort(conn.upstream, rst=False)
            if conn.task is not None and conn.task is not asyncio.current_task():
                conn.task.cancel()
                tasks.append(conn.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        self._loop = None
        self._changed = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ thread lifecycle
    def run_in_thread(self, timeout: float = 5.0) -> Self:
        """Run the proxy on its own event loop in a daemon thread; returns once it is listening."""
        if self._thread is not None or self._server is not None:
            raise RuntimeError("the proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                try:
                    loop.run_until_complete(self.start())
                except BaseException as exc:
                    failure.append(exc)
                    return
                finally:
                    ready.set()
                loop.run_forever()
                loop.run_until_complete(self.stop())  # no-op after close(); cleans up otherwise
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name=f"fault-proxy-{self.upstream_port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the fault proxy to port {self.upstream_port} did not start in {timeout}s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop the proxy from any thread but its loop's (there: `await stop()`); ends its thread."""
        loop = self._loop
        if loop is not None and self._on_loop():
            raise RuntimeError("close() would block the proxy's own loop: await stop() instead")
        if loop is not None and self._server is not None:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        thread, self._thread = self._thread, None
        if thread is not None:
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # its loop has already closed
                    loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.run_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ faults
    def fault(
        self,
        spec: Fault,
        *,
        kind: str | None = None,
        path_prefix: str | None = None,
        match: Callable[[ConnInfo], bool] | None = None,
        selector: Selector | None = None,
        duration: float | None = None,
    ) -> ActiveFault:
        """Put `spec` in effect on the selected connections, open and new, until healed or, with
        `duration`, for that many seconds; when this returns, the fault has taken effect.
        The shortcuts below (latency, reset, cut, blackhole, ...) take the same keywords as `**select`."""
        if selector is None:
            selector = Selector(kind, path_prefix, match)
        elif kind is not None or path_prefix is not None or match is not None:
            raise ValueError("give either selector or kind/path_prefix/match, not both")
        if duration is not None and duration <= 0:
            raise ValueError("duration must be > 0 seconds")
        handle = ActiveFault(self, next(self._fault_ids), spec, selector, duration)
        with self._lock:
            if isinstance(spec, Reset) and spec.after_bytes is not None:
                handle._baselines = {c.info.id: c.total for c in self._conns.values()}
            self._faults.append(handle)
            self._record("start", handle, "injected", handle.started_monotonic, handle.started_wall)
        log.info("fault injected", extra={"fault": handle.label, "proxy_port": self.port})
        self._run_on_loop(lambda: self._activate(handle))
        return handle

    def latency(
        self, delay: float, jitter: float = 0.0, direction: Direction = "both", **select: Any
    ) -> ActiveFault:
        """Add `delay` ± `jitter` seconds to every chunk in `direction` (see `Latency`)."""
        return self.fault(Latency(delay, jitter, direction), **select)

    def reset(
        self,
        now: bool = True,
        every: float | None = None,
        after_bytes: int | None = None,
        refuse_new: bool = False,
        **select: Any,
    ) -> ActiveFault:
        """Reset the selected connections: now, periodically and/or after a byte budget (see `Reset`)."""
        return self.fault(Reset(now, every, after_bytes, refuse_new), **select)

    def cut(self, **select: Any) -> ActiveFault:
        """The link goes down: open connections get an RST and every reconnect is reset, until healed."""
        return self.fault(Reset(now=True, refuse_new=True), **select)

    def blackhole(
        self, refuse_new: bool = False, direction: Direction = "both", **select: Any
    ) -> ActiveFault:
        """Forward nothing, holding the bytes; new connections are held too or reset (see `BlackHole`)."""
        return self.fault(BlackHole(refuse_new, direction), **select)

    def slow_close(self, delay: float, **select: Any) -> ActiveFault:
        """Delay passing on each side's close by `delay` seconds."""
        return self.fault(SlowClose(delay), **select)

    def bandwidth(self, bytes_per_s: float, direction: Direction = "both", **select: Any) -> ActiveFault:
        """Throttle forwarding to `bytes_per_s` (see `Bandwidth`)."""
        return self.fault(Bandwidth(bytes_per_s, direction), **select)

    def clear(self) -> int:
        """Heal every fault (the network is fine again); returns how many were active."""
        return sum(self._heal(handle, "cleared") for handle in self.faults())

    def faults(self) -> list[ActiveFault]:
        """The faults in effect now."""
        with self._lock:
            return list(self._faults)

    @property
    def timeline(self) -> list[FaultEvent]:
        """Every fault start and stop so far, in order."""
        with self._lock:
            return list(self._timeline)

    def connections(self, kind: str | None = None, path_prefix: str | None = None) -> list[ConnInfo]:
        """The proxied connections open now (optionally only those a selector would match)."""
        selector = Selector(kind, path_prefix)
        with self._lock:
            return [c.info for c in self._conns.values() if not c.closed and selector.matches(c.info)]

    def wait_connected(
        self, kind: str | None = None, path_prefix: str | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[ConnInfo]:
        """Block (not on the proxy's loop) until `count` such connections are open; them, or TimeoutError.
        Chaos tests cut a stream once the client under test has actually opened it."""
        if self._on_loop():
            raise RuntimeError("wait_connected() would block the proxy's own loop: poll connections()")
        deadline = time.monotonic() + timeout
        while True:
            found = self.connections(kind, path_prefix)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} {kind or 'any'} {path_prefix or ''} connections")
            time.sleep(0.01)

    def stats(self) -> ProxyStats:
        """A snapshot of the counters."""
        with self._lock:
            open_now = _kind_counter()
            for conn in self._conns.values():
                open_now[conn.info.kind] += 1
            return ProxyStats(
                accepted=dict(self._accepted),
                refused=dict(self._refused),
                open=open_now,
                resets=dict(self._resets),
                bytes_up=dict(self._bytes["up"]),
                bytes_down=dict(self._bytes["down"]),
                upstream_errors=self._upstream_errors,
            )

    # ------------------------------------------------------------------ fault bookkeeping
    def _record(
        self, action: Literal["start", "stop"], h: ActiveFault, reason: str, mono: float, wall: float
    ) -> None:
        self._timeline.append(FaultEvent(action, h.id, h.label, reason, mono, wall))

    def _heal(self, handle: ActiveFault, reason: str) -> bool:
        with self._lock:
            if handle not in self._faults:
                return False
            self._faults.remove(handle)
            handle.healed_monotonic = time.monotonic()
            self._record("stop", handle, reason, handle.healed_monotonic, time.time())
        log.info("fault healed", extra={"fault": handle.label, "reason": reason, "proxy_port": self.port})
        self._run_on_loop(lambda: (self._disarm(handle), self._notify()), wait=False)
        return True

    def _active(self) -> list[ActiveFault]:
        """The faults in effect, healing the ones whose duration has run out (their timer may lag)."""
        now = time.monotonic()
        with self._lock:
            expired = [h for h in self._faults if h.ends_monotonic is not None and now >= h.ends_monotonic]
        for handle in expired:
            self._heal(handle, "expired")
        with self._lock:
            return list(self._faults)

    def _matching(self, conn: _Conn, kind: type[Any] | tuple[type[Any], ...]) -> list[Any]:
        return [h for h in self._active() if isinstance(h.spec, kind) and h.selector.matches(conn.info)]

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _run_on_loop(self, fn: Callable[[], object], wait: bool = True) -> None:
        """Run `fn` on the proxy's loop: at once when on it, else posted (and waited for, with `wait`)."""
        loop = self._loop
        if loop is None or self._server is None:
            return
        if self._on_loop():
            fn()
            return

        async def call() -> None:
            fn()

        try:
            future = asyncio.run_coroutine_threadsafe(call(), loop)
        except RuntimeError:  # the loop is closing
            return
        if wait:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                future.result(5.0)

    def _activate(self, handle: ActiveFault) -> None:
        """On the loop: a new fault's immediate effects, its timer and periodic task; wake the pumps."""
        if not handle.active:
            return
        if isinstance(handle.spec, Reset) and handle.spec.now:
            self._reset_matching(handle)
        self._arm(handle)
        self._notify()

    def _arm(self, handle: ActiveFault) -> None:
        loop = self._loop
        if loop is None or not handle.active:
            return
        if handle.ends_monotonic is not None and handle._timer is None:
            delay = max(0.0, handle.ends_monotonic - time.monotonic())
            handle._timer = loop.call_later(delay, self._heal, handle, "expired")
        if isinstance(handle.spec, Reset) and handle.spec.every is not None and handle._task is None:
            handle._task = loop.create_task(self._reset_every(handle, handle.spec.every))

    def _disarm(self, handle: ActiveFault) -> None:
        if handle._timer is not None:
            handle._timer.cancel()
            handle._timer = None
        if handle._task is not None:
            if handle._task is not asyncio.current_task():
                handle._task.cancel()
            handle._task = None

    def _notify(self) -> None:
        """On the loop: wake every pump waiting for a fault to change."""
        if self._changed is not None:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def _wait_change(self) -> None:
        changed = self._changed
        if changed is None:
            await asyncio.sleep(_WAKE_S)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), _WAKE_S)

    async def _reset_every(self, handle: ActiveFault, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if handle not in self._active():
                return
            self._reset_matching(handle)

    def _reset_matching(self, handle: ActiveFault) -> None:
        with self._lock:
            conns = [c for c in self._conns.values() if not c.closed and handle.selector.matches(c.info)]
        for conn in conns:
            self._reset(conn)

    def _reset(self, conn: _Conn) -> None:
        """On the loop: an injected RST to both ends of `conn`."""
        if conn.closed:
            return
        with self._lock:
            self._resets[conn.info.kind] += 1
        self._kill(conn, rst=True)

    def _kill(self, conn: _Conn, rst: bool) -> None:
        conn.closed = True
        _abort(conn.client, rst)
        _abort(conn.upstream, rst)
        current = asyncio.current_task()
        for task in conn.pumps:
            if task is not current:
                task.cancel()

    # ------------------------------------------------------------------ connections
    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(next(self._conn_ids), writer)
        conn.task = asyncio.current_task()
        with self._lock:
            self._conns[conn.info.id] = conn
        try:
            await self._serve(conn, reader)
        except asyncio.CancelledError:
            if self._server is not None:  # cancelled by something else than stop(): the peers learn it
                self._kill(conn, rst=True)
            raise
        except (OSError, TimeoutError) as exc:
            log.debug("proxied connection failed: %r", exc)
            self._kill(conn, rst=True)
        finally:
            with self._lock:
                self._conns.pop(conn.info.id, None)
            if not conn.closed:
                self._kill(conn, rst=False)

    def _refuses(self, conn: _Conn) -> bool:
        return any(h.spec.refuse_new for h in self._matching(conn, (Reset, BlackHole)))

    def _refuse(self, conn: _Conn) -> None:
        with self._lock:
            self._refused[conn.info.kind] += 1
        self._kill(conn, rst=True)

    def _held(self, conn: _Conn, direction: str, fully: bool = False) -> bool:
        wanted = ("both",) if fully else ("both", direction)
        return any(h.spec.direction in wanted for h in self._matching(conn, BlackHole))

    async def _hold(self, conn: _Conn, direction: str, fully: bool = False) -> None:
        while not conn.closed and self._held(conn, direction, fully):
            await self._wait_change()

    async def _sniff(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
        """The client's first bytes, up to the end of its request's headers; (bytes, eof seen)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sniff_timeout
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < _SNIFF_LIMIT and (not buf or _could_be_http(buf)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(_CHUNK), remaining)
            except TimeoutError:
                break
            if not chunk:
                return buf, True
            buf += chunk
        return buf, False

    async def _serve(self, conn: _Conn, client_reader: asyncio.StreamReader) -> None:
        if self._refuses(conn):  # an all-connections refusal needs no sniffing
            self._refuse(conn)
            return
        first, eof = await self._sniff(client_reader) if self.sniff_timeout > 0 else (b"", False)
        if conn.closed:  # reset while being sniffed
            return
        kind, method, path = classify(first)
        conn.info = ConnInfo(conn.info.id, kind, method, path, conn.info.peer, conn.info.opened_monotonic)
        with self._lock:
            self._accepted[kind] += 1
        if self._refuses(conn):
            self._refuse(conn)
            return
        await self._hold(conn, "both", fully=True)  # a black-holed link: not even a connect upstream
        if conn.closed:
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), self.connect_timeout
            )
        except (OSError, TimeoutError):
            with self._lock:
                self._upstream_errors += 1
            self._kill(conn, rst=True)  # what the client would have seen connecting directly
            return
        conn.upstream = up_writer
        if conn.closed:  # reset while connecting
            _abort(up_writer, rst=True)
            return
        up_q: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(_QUEUE_CHUNKS)
        down_q: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(_QUEUE_CHUNKS)
        conn.pumps = [
            asyncio.create_task(self._read_side(conn, client_reader, "up", up_q, first, eof)),
            asyncio.create_task(self._write_side(conn, up_writer, "up", up_q)),
            asyncio.create_task(self._read_side(conn, up_reader, "down", down_q)),
            asyncio.create_task(self._write_side(conn, conn.client, "down", down_q)),
        ]
        done, pending = await asyncio.wait(conn.pumps, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed or any(t.cancelled() for t in done):
            if not conn.closed:
                self._kill(conn, rst=True)  # one side reset or failed: the other side learns it the same way
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return
        # both directions ended with a close: close both ends cleanly
        conn.closed = True
        for writer in (conn.client, up_writer):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _deliver_at(self, conn: _Conn, direction: str) -> float:
        now = asyncio.get_running_loop().time()
        extra = 0.0
        for handle in self._matching(conn, Latency):
            spec: Latency = handle.spec
            if spec.direction in ("both", direction):
                extra += max(0.0, spec.delay + self._rng.uniform(-spec.jitter, spec.jitter))
        at = max(conn.last_at[direction], now + extra)  # jitter never reorders bytes
        conn.last_at[direction] = at
        return at

    def _rate(self, conn: _Conn, direction: str) -> float | None:
        rates = [
            h.spec.bytes_per_s
            for h in self._matching(conn, Bandwidth)
            if h.spec.direction in ("both", direction)
        ]
        return min(rates) if rates else None

    def _budget(self, conn: _Conn) -> int | None:
        """Bytes `conn` may still forward before an after-bytes reset fires; None: no such fault."""
        budgets = [
            h.spec.after_bytes - (conn.total - h._baselines.get(conn.info.id, 0))
            for h in self._matching(conn, Reset)
            if h.spec.after_bytes is not None
        ]
        return max(0, min(budgets)) if budgets else None

    async def _read_side(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        direction: str,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        first: bytes = b"",
        eof: bool = False,
    ) -> None:
        if first:
            await queue.put((self._deliver_at(conn, direction), first))
        if eof:  # the client closed while being sniffed
            await queue.put((self._deliver_at(conn, direction), None))
            return
        while True:
            await self._hold(conn, direction)
            rate = self._rate(conn, direction)
            data = await reader.read(_CHUNK if rate is None else max(1, min(_CHUNK, int(rate / 20))))
            await queue.put((self._deliver_at(conn, direction), data or None))
            if not data:
                return

    async def _write_side(
        self,
        conn: _Conn,
        writer: asyncio.StreamWriter,
        direction: str,
        queue: asyncio.Queue[tuple[float, bytes | None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, data = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._hold(conn, direction)
            if data is None:
                delay = sum(h.spec.delay for h in self._matching(conn, SlowClose))
                if delay:
                    await asyncio.sleep(delay)
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            await self._send(conn, writer, direction, data)

    async def _send(self, conn: _Conn, writer: asyncio.StreamWriter, direction: str, data: bytes) -> None:
        budget = self._budget(conn)
        cut = budget is not None and len(data) >= budget
        if cut:
            data = data[:budget]
        rate = self._rate(conn, direction)
        step = len(data) if rate is None else max(1, min(_CHUNK, int(rate / 20)))
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            writer.write(piece)
            await writer.drain()
            conn.bytes[direction] += len(piece)
            with self._lock:
                self._bytes[direction][conn.info.kind] += len(piece)
            rate = self._rate(conn, direction)
            if rate is not None:
                await asyncio.sleep(len(piece) / rate)
        if cut:
            self._reset(conn)
            raise ConnectionResetError("reset after the byte budget of a fault")
