"""Test doubles: a local Bybit-like HTTP server enforcing rolling-window limits, and a Slack receiver.
Both are real servers on free local ports; Slack itself cannot be reached from the test environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from support.redis_server import _die_with_parent, free_port
from support.slack import SlackReceiver

__all__ = ["FakeBybitServer", "FakeClock", "KeepAliveClient", "RollingWindowExchange", "SlackReceiver"]


class RollingWindowExchange:
    """The exchange's side of the rate limit: per-path rolling window over arrival times (ms).
    Shared by the HTTP server (wall clock) and in-process tests (fake clock)."""

    def __init__(self, limits: dict[str, int], *, window_ms: float = 1000.0, default_limit: int = 10) -> None:
        self.limits = dict(limits)
        self.window_ms = window_ms
        self.default_limit = default_limit
        self.windows: dict[str, deque[float]] = {}
        self.arrivals: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()
        self.forbid_next = 0
        self.reject_next_without_reset = 0

    def handle(self, path: str, now_ms: float) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(HTTP status, JSON body, headers) for one request arriving at ``now_ms``."""
        with self.lock:
            limit = self.limits.get(path, self.default_limit)
            window = self.windows.setdefault(path, deque())
            while window and window[0] <= now_ms - self.window_ms:
                window.popleft()
            if self.forbid_next > 0:
                self.forbid_next -= 1
                self.arrivals.append((path, now_ms, 403))
                return 403, {}, {}
            if self.reject_next_without_reset > 0:
                self.reject_next_without_reset -= 1
                self.arrivals.append((path, now_ms, 10006))
                return 200, _envelope(10006), {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": "0"}
            if len(window) >= limit:
                self.arrivals.append((path, now_ms, 10006))
                headers = {
                    "X-Bapi-Limit": str(limit),
                    "X-Bapi-Limit-Status": "0",
                    "X-Bapi-Limit-Reset-Timestamp": str(int(window[0] + self.window_ms)),
                }
                return 200, _envelope(10006), headers
            window.append(now_ms)
            self.arrivals.append((path, now_ms, 0))
            headers = {
                "X-Bapi-Limit": str(limit),
                "X-Bapi-Limit-Status": str(limit - len(window)),
                "X-Bapi-Limit-Reset-Timestamp": str(int(now_ms)),
            }
            return 200, _envelope(0), headers

    def count(self, code: int) -> int:
        with self.lock:
            return sum(1 for _, _, c in self.arrivals if c == code)

    def max_in_window(self, path: str) -> int:
        """Most accepted arrivals of ``path`` inside any rolling window (checked independently)."""
        with self.lock:
            times = sorted(t for p, t, c in self.arrivals if p == path and c == 0)
        best, start = 0, 0
        for end, t in enumerate(times):
            while times[start] <= t - self.window_ms:
                start += 1
            best = max(best, end - start + 1)
        return best


def _envelope(ret_code: int) -> dict[str, Any]:
    msg = "OK" if ret_code == 0 else "Too many visits!"
    return {
        "retCode": ret_code,
        "retMsg": msg,
        "result": {},
        "retExtInfo": {},
        "time": int(time.time() * 1000),
    }


def create_app() -> FastAPI:
    """The Bybit-like ASGI app: ``/v5/...`` is rate limited, ``/__control/...`` lets tests steer it."""
    app = FastAPI()
    state: dict[str, RollingWindowExchange] = {"exchange": RollingWindowExchange({})}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/__control/reset")
    async def reset(request: Request) -> dict[str, str]:
        state["exchange"] = RollingWindowExchange((await request.json())["limits"])
        return {"status": "ok"}

    @app.post("/__control/set")
    async def set_modes(request: Request) -> dict[str, str]:
        exchange = state["exchange"]
        with exchange.lock:
            for name, value in (await request.json()).items():
                setattr(exchange, name, int(value))
        return {"status": "ok"}

    @app.get("/__control/state")
    async def get_state(path: str) -> dict[str, Any]:
        exchange = state["exchange"]
        counts = {str(code): exchange.count(code) for code in (0, 403, 10006)}
        return {"counts": counts, "max_in_window": exchange.max_in_window(path)}

    @app.api_route("/v5/{rest:path}", methods=["GET", "POST"])
    async def endpoint(rest: str) -> Response:
        status, body, headers = state["exchange"].handle("/v5/" + rest, time.time() * 1000.0)
        if status == 403:
            return PlainTextResponse("access too frequent", status_code=403)
        return JSONResponse(body, status_code=status, headers=headers)

    return app


class RemoteExchange:
    """The test's handle on the server process's RollingWindowExchange (over the control endpoints)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _set(self, **modes: int) -> None:
        httpx.post(f"{self.url}/__control/set", json=modes, timeout=5).raise_for_status()

    def _state(self, path: str = "/") -> dict[str, Any]:
        response = httpx.get(f"{self.url}/__control/state", params={"path": path}, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def count(self, code: int) -> int:
        return int(self._state()["counts"][str(code)])

    def max_in_window(self, path: str) -> int:
        return int(self._state(path)["max_in_window"])

    def forbid(self, n: int) -> None:
        """Answer the next ``n`` requests with HTTP 403 (IP ban)."""
        self._set(forbid_next=n)

    def reject_without_reset(self, n: int) -> None:
        """Answer the next ``n`` requests with 10006 and no X-Bapi-Limit-Reset-Timestamp header."""
        self._set(reject_next_without_reset=n)


class FakeBybitServer:
    """The Bybit-like app under uvicorn in a child process (its own CPU, dies with the tests)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FakeBybitServer:
        tests_dir = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
        command = [
            sys.executable, "-m", "uvicorn", f"{__name__}:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", "--no-access-log", "--lifespan", "off",
        ]  # fmt: skip
        self._proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise RuntimeError("fake Bybit server did not start")
            time.sleep(0.05)

    def reset(self, limits: dict[str, int]) -> RemoteExchange:
        httpx.post(f"{self.url}/__control/reset", json={"limits": limits}, timeout=5).raise_for_status()
        return RemoteExchange(self.url)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams for the timing tests.
    httpx costs milliseconds of CPU per request, enough to smear a burst of 50 on a small machine."""

    def __init__(self, url: str, connections: int = 50) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.size = host, int(port), connections
        self._idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.LifoQueue()

    async def __aenter__(self) -> KeepAliveClient:
        for _ in range(self.size):
            self._idle.put_nowait(await asyncio.open_connection(self.host, self.port))
        await asyncio.gather(*(self.request("GET", "/health") for _ in range(self.size)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """(HTTP status, headers, JSON body or None) of one request on a pooled connection."""
        reader, writer = await self._idle.get()
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            payload = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            self._idle.put_nowait(await asyncio.open_connection(self.host, self.port))
            raise
        self._idle.put_nowait((reader, writer))
        parsed = (
            json.loads(payload) if headers.get("content-type", "").startswith("application/json") else None
        )
        return status, headers, parsed


class FakeClock:
    """Virtual epoch-millisecond clock; ``sleep`` advances it instead of waiting."""

    def __init__(self, start_ms: float = 1_700_000_000_000.0) -> None:
        self.now = start_ms
        self.start = start_ms
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds * 1000.0

    @property
    def elapsed_s(self) -> float:
        return (self.now - self.start) / 1000.0


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
