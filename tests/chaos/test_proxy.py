"""The fault-injection proxy over real loopback sockets: a tiny echo server, a tiny HTTP server and
the real simulator (REST keeps working while only its private WebSocket is cut)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from methtrader.chaos import OTHER, REST, WEBSOCKET, FaultProxy, Latency, Selector
from methtrader.chaos.proxy import classify
from methtrader.data import resolve_bars
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.venue import SimExchange

WS_FAILURES = (OSError, TimeoutError, websockets.exceptions.WebSocketException)


# ---------------------------------------------------------------------------------------- upstreams
class ThreadServer:
    """An asyncio TCP server on a free loopback port, run in a daemon thread for sync tests."""

    def __init__(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def serve() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = int(self.server.sockets[0].getsockname()[1])
            ready.set()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()
            self.server.close()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def http_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive: every request (headers only) is answered `200 <path>`."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
        await writer.drain()


@pytest.fixture
def echo_server() -> Iterator[ThreadServer]:
    server = ThreadServer(echo)
    yield server
    server.close()


@pytest.fixture
def http_server() -> Iterator[ThreadServer]:
    server = ThreadServer(http_ok)
    yield server
    server.close()


def client(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def http_get(sock: socket.socket, path: str, websocket: bool = False) -> bytes:
    upgrade = b"Upgrade: websocket\r\nConnection: Upgrade\r\n" if websocket else b""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), upgrade))
    return sock.recv(65536)


def refused(proxy: FaultProxy, payload: bytes = b"x") -> bool:
    """True when a new connection through `proxy` is reset (at connect already, or at the first read)."""
    try:
        with client(proxy) as sock:
            sock.sendall(payload)
            return reset_or_eof(sock)
    except (ConnectionResetError, BrokenPipeError):
        return True


def reset_or_eof(sock: socket.socket) -> bool:
    """True when the peer reset the connection or closed it (no data arrives any more)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------------------------------- classification
@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (
            b"GET /v5/private HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            (WEBSOCKET, "GET", "/v5/private"),
        ),
        (
            b"GET /v5/public/linear?x=1 HTTP/1.1\r\nupgrade: WebSocket\r\n\r\n",
            (WEBSOCKET, "GET", "/v5/public/linear"),
        ),
        (b"POST /v5/order/create HTTP/1.1\r\nHost: x\r\n\r\n{}", (REST, "POST", "/v5/order/create")),
        (b"GET http://h:1/v5/market/time HTTP/1.1\r\n\r\n", (REST, "GET", "/v5/market/time")),
        (b"\x16\x03\x01\x02\x00", (OTHER, None, None)),
        (b"", (OTHER, None, None)),
    ],
)
def test_first_request_classifies_the_connection(
    first: bytes, expected: tuple[str, str | None, str | None]
) -> None:
    assert classify(first) == expected


def test_selector_matches_kind_path_and_predicate() -> None:
    from methtrader.chaos import ConnInfo

    ws = ConnInfo(1, WEBSOCKET, "GET", "/v5/private", "127.0.0.1:1", 0.0)
    rest = ConnInfo(2, REST, "GET", "/v5/market/time", "127.0.0.1:2", 0.0)
    pending = ConnInfo(3, "pending", None, None, "127.0.0.1:3", 0.0)
    private = Selector(kind=WEBSOCKET, path_prefix="/v5/private")
    assert private.matches(ws) and not private.matches(rest) and not private.matches(pending)
    assert Selector().matches(pending) and Selector().matches(rest)
    assert Selector(match=lambda c: c.id == 2).matches(rest)
    with pytest.raises(ValueError):
        Selector(kind="grpc")
    with pytest.raises(ValueError):
        Latency(-1)


# ---------------------------------------------------------------------------------------- async use
def test_async_lifecycle_forwards_both_ways_and_counts() -> None:
    async def main() -> None:
        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        async with FaultProxy("127.0.0.1", port, sniff_timeout=0.1) as proxy:
            assert proxy.port and proxy.url == f"http://127.0.0.1:{proxy.port}"
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(b"x" * 100_000)
            got = await reader.readexactly(100_000)
            assert got == b"x" * 100_000
            stats = proxy.stats()
            assert stats.accepted[OTHER] == 1 and stats.open[OTHER] == 1
            assert stats.total_bytes_up == stats.total_bytes_down == 100_000
            proxy.reset()  # on the proxy's own loop: applied before returning
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                await reader.readexactly(1)
            assert proxy.stats().resets_sent == 1
            writer.close()
        upstream.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------- faults
def test_latency_delays_each_direction(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy, client(proxy) as sock:
        assert roundtrip(sock, b"warm") == b"warm"
        start = time.monotonic()
        assert roundtrip(sock, b"ping") == b"ping"
        base = time.monotonic() - start
        with proxy.latency(0.15, direction="down"):
            start = time.monotonic()
            assert roundtrip(sock, b"ping") == b"ping"
            one_way = time.monotonic() - start
        with proxy.latency(0.1, jitter=0.02):  # each way: a round trip gains 2 x (0.1 ± 0.02)
            start = time.monotonic()
            assert roundtrip(sock, b"ping") == b"ping"
            both = time.monotonic() - start
        start = time.monotonic()
        assert roundtrip(sock, b"ping") == b"ping"
        healed = time.monotonic() - start
    assert 0.15 <= one_way < 0.15 + base + 0.3
    assert 0.16 <= both < 0.24 + base + 0.3
    assert healed < 0.1


def test_latency_with_jitter_keeps_the_byte_order(echo_server: ThreadServer) -> None:
    with (
        FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05, seed=1) as proxy,
        client(proxy) as sock,
    ):
        proxy.latency(0.02, jitter=0.02)
        payload = b"".join(b"%04d" % i for i in range(300))
        for i in range(0, len(payload), 40):
            sock.sendall(payload[i : i + 40])
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
        assert got == payload


def test_reset_now_sends_an_rst_and_after_bytes_cuts_exactly(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy:
        with client(proxy) as sock:
            assert roundtrip(sock, b"hello") == b"hello"
            proxy.reset()
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        assert proxy.stats().resets_sent == 1
        proxy.clear()
        with client(proxy) as sock:
            proxy.reset(now=False, after_bytes=30)  # 15 bytes up + 15 echoed down
            sock.sendall(b"y" * 100)
            got = b""
            with pytest.raises(ConnectionResetError):
                while chunk := sock.recv(100):
                    got += chunk
            assert len(got) <= 15
        assert proxy.stats().resets_sent == 2


def test_reset_every_interval_and_refused_reconnects(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy:
        with proxy.reset(now=False, every=0.2), client(proxy) as sock:
            assert roundtrip(sock, b"a") == b"a"
            start = time.monotonic()
            assert reset_or_eof(sock)
            assert 0.05 < time.monotonic() - start < 1.0
        with proxy.cut():  # every connection: refused before any sniffing
            assert refused(proxy)
        assert proxy.stats().refused["pending"] == 1
        with client(proxy) as sock:
            assert roundtrip(sock, b"back") == b"back"


def test_blackhole_holds_bytes_until_healed_and_holds_new_connections(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy, client(proxy, 0.3) as sock:
        assert roundtrip(sock, b"before") == b"before"
        hole = proxy.blackhole()
        sock.sendall(b"during")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        with client(proxy, 0.3) as fresh:  # accepted, but nothing goes through
            fresh.sendall(b"fresh")
            with pytest.raises(TimeoutError):
                fresh.recv(10)
            upstream_before = echo_server.connections
            hole.heal()
            fresh.settimeout(2)
            assert fresh.recv(10) == b"fresh"  # a partition that healed: the held bytes arrive
            assert echo_server.connections == upstream_before + 1
        sock.settimeout(2)
        assert sock.recv(10) == b"during"
        with proxy.blackhole(refuse_new=True):
            assert refused(proxy)


def test_timed_fault_heals_itself_and_the_timeline_has_both_clocks(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy, client(proxy) as sock:
        wall = time.time()
        hole = proxy.blackhole(duration=0.3)
        sock.sendall(b"held")
        assert sock.recv(10) == b"held"  # arrives once the fault has run out
        assert not hole.active and proxy.faults() == []
        start, stop = proxy.timeline
        assert (start.action, start.reason, stop.action, stop.reason) == (
            "start",
            "injected",
            "stop",
            "expired",
        )
        assert start.fault_id == stop.fault_id == hole.id
        assert 0.3 <= stop.monotonic - start.monotonic < 0.5
        assert wall - 1 < start.wall <= stop.wall < wall + 5
        assert "blackhole" in start.label and "0.3s" in start.label


def test_slow_close_delays_the_close(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy, client(proxy) as sock:
        proxy.slow_close(0.3)
        assert roundtrip(sock, b"x") == b"x"
        start = time.monotonic()
        sock.shutdown(socket.SHUT_WR)  # reaches the echo server 0.3 s late; its close, 0.3 s later again
        assert sock.recv(10) == b""
        assert 0.6 <= time.monotonic() - start < 1.5


def test_bandwidth_limit(echo_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05) as proxy, client(proxy, 5) as sock:
        proxy.bandwidth(100_000, direction="up")
        start = time.monotonic()
        assert roundtrip(sock, b"z" * 40_000) == b"z" * 40_000
        assert 0.3 <= time.monotonic() - start < 2.0


def test_selective_cut_of_websocket_kind_keeps_rest(http_server: ThreadServer) -> None:
    with FaultProxy("127.0.0.1", http_server.port) as proxy:
        rest = client(proxy)
        private = client(proxy)
        public = client(proxy)
        assert http_get(rest, "/v5/market/time").endswith(b"/v5/market/time")
        assert http_get(private, "/v5/private", websocket=True).endswith(b"/v5/private")
        assert http_get(public, "/v5/public/linear", websocket=True).endswith(b"/v5/public/linear")
        assert {c.path for c in proxy.connections(kind=WEBSOCKET)} == {"/v5/private", "/v5/public/linear"}
        cut = proxy.cut(kind=WEBSOCKET, path_prefix="/v5/private")
        assert reset_or_eof(private)
        assert http_get(rest, "/v5/order/realtime").endswith(b"/v5/order/realtime")  # same REST connection
        assert http_get(public, "/again").endswith(b"/again")
        assert refused(proxy, b"GET /v5/private HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
        cut.heal()
        with client(proxy) as again:
            assert http_get(again, "/v5/private", websocket=True).endswith(b"/v5/private")
        stats = proxy.stats()
        assert stats.accepted[REST] == 1 and stats.accepted[WEBSOCKET] == 4
        assert stats.refused[WEBSOCKET] == 1 and stats.resets[WEBSOCKET] == 1
        for sock in (rest, private, public):
            sock.close()


def test_faults_set_before_start_and_restart_on_the_same_port(echo_server: ThreadServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo_server.port, sniff_timeout=0.05)
    proxy.latency(0.1)
    with proxy, client(proxy) as sock:
        port = proxy.port
        start = time.monotonic()
        assert roundtrip(sock, b"x") == b"x"
        assert time.monotonic() - start >= 0.2
    proxy.clear()
    with proxy, client(proxy) as sock:
        assert proxy.port == port
        assert roundtrip(sock, b"y") == b"y"


def test_upstream_down_resets_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port, sniff_timeout=0.05) as proxy, client(proxy) as sock:
        sock.sendall(b"anyone?")
        assert reset_or_eof(sock)
        assert proxy.stats().upstream_errors == 1


# ---------------------------------------------------------------------------------------- the simulator
@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    exchange = SimExchange(
        series, instrument, state_dir=tmp_path_factory.mktemp("sim-proxy"), speed=0, cash=Decimal(10_000)
    )
    with BackgroundServer(exchange) as server:
        yield server


async def ws_ping(url: str, timeout: float = 2.0) -> dict[str, object]:
    async with ws_connect(url, open_timeout=timeout, ping_interval=None) as ws:
        await ws.send(json.dumps({"op": "ping", "req_id": "p"}))
        return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_simulator_private_stream_cut_while_rest_keeps_working(sim: BackgroundServer) -> None:
    async def main() -> None:
        async with FaultProxy("127.0.0.1", sim.port) as proxy, httpx.AsyncClient(base_url=proxy.url) as rest:
            assert (await rest.get("/v5/market/time")).json()["retCode"] == 0
            private = await ws_connect(f"{proxy.ws_url}/v5/private", ping_interval=None)
            assert (await ws_ping(f"{proxy.ws_url}/v5/private"))["op"] == "pong"

            cut = proxy.cut(kind=WEBSOCKET, path_prefix="/v5/private")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(private.recv(), 2)
            with pytest.raises(WS_FAILURES):
                await ws_ping(f"{proxy.ws_url}/v5/private", timeout=1)  # reconnects fail until healed
            assert (await rest.get("/v5/market/time")).json()["retCode"] == 0  # same keep-alive connection
            assert "pong" in json.dumps(await ws_ping(f"{proxy.ws_url}/v5/public/linear"))

            assert proxy.clear() == 1 and not cut.active
            assert (await ws_ping(f"{proxy.ws_url}/v5/private"))["op"] == "pong"
            assert (await rest.get("/v5/market/tickers", params={"category": "linear"})).status_code == 200

            stats = proxy.stats()
            assert stats.accepted[REST] == 1  # httpx kept one connection for every REST call
            assert stats.refused[WEBSOCKET] == 1  # the retry during the cut
            assert stats.resets[WEBSOCKET] >= 1  # the open socket (and the first ping's, if still closing)
            assert [e.action for e in proxy.timeline] == ["start", "stop"]

    asyncio.run(main())


def test_simulator_private_stream_blackholed_for_a_while_from_a_sync_test(sim: BackgroundServer) -> None:
    with FaultProxy("127.0.0.1", sim.port) as proxy, httpx.Client(base_url=proxy.url) as rest:
        done = threading.Event()

        async def hold_stream() -> None:
            async with ws_connect(f"{proxy.ws_url}/v5/private", ping_interval=None):
                while not done.is_set():
                    await asyncio.sleep(0.01)

        stream = threading.Thread(target=asyncio.run, args=(hold_stream(),))
        stream.start()
        (info,) = proxy.wait_connected(kind=WEBSOCKET, path_prefix="/v5/private", timeout=5)
        assert (info.method, info.path) == ("GET", "/v5/private")
        done.set()
        stream.join(5)
        hole = proxy.blackhole(path_prefix="/v5/private", duration=1.5)
        with pytest.raises(WS_FAILURES):
            asyncio.run(ws_ping(f"{proxy.ws_url}/v5/private", timeout=0.5))  # handshake hangs
        assert rest.get("/v5/market/time").status_code == 200
        while hole.active:
            time.sleep(0.05)
        assert asyncio.run(ws_ping(f"{proxy.ws_url}/v5/private"))["op"] == "pong"
        assert proxy.timeline[-1].reason == "expired"
