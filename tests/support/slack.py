"""A local stand-in for a Slack incoming webhook: a real HTTP server on a free port recording POSTs.
``status`` and ``delay_s`` simulate a sick Slack; the URL's path is the suite's test webhook secret."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.redis_server import free_port
from support.secrets import webhook_url


class SlackReceiver:
    """A tiny HTTP server recording POST bodies; ``status`` and ``delay_s`` simulate a sick Slack."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        self.delay_s = 0.0
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                receiver.bodies.append(body)
                receiver.paths.append(self.path)
                receiver.received.set()
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self.url = webhook_url(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="slack-receiver", daemon=True
        )
        self._thread.start()

    @property
    def texts(self) -> list[str]:
        return [str(body.get("text", "")) for body in self.bodies]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
