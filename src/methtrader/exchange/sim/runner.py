"""Run an ASGI app (the simulator's, the ops endpoints) under uvicorn in a background thread:
tests, notebooks, and embedding a server in a trading process."""

import socket
import threading
import time
from typing import Any, Self

import uvicorn

from methtrader.exchange.sim.server import create_app
from methtrader.exchange.sim.venue import SimExchange


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AppServer:
    """`with AppServer(app) as srv:` serves `app` on srv.url until the block ends."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int | None = None, name: str = "uvicorn"
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            log_config=None,  # keep the process's logging (JSON lines), not uvicorn's plain text
            lifespan="on",
            ws="websockets-sansio",
            ws_ping_interval=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BackgroundServer(AppServer):
    """`with BackgroundServer(exchange) as srv:` serves the simulator on srv.url until the block ends."""

    def __init__(self, exchange: SimExchange, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__(create_app(exchange), host, port, name="sim-uvicorn")
        self.exchange = exchange
