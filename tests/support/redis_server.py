"""A private, throw-away redis-server for tests: free port, no persistence, never port 6379.

    with RedisServer() as server:       # skips the test if redis-server is not installed
        client = redis.Redis.from_url(server.url)
        server.stop()                   # chaos: the server goes away ...
        server.start()                  # ... and comes back, empty, on the same port

The server runs in the foreground of a child process that dies with the test process (Linux
PR_SET_PDEATHSIG), with its working directory and log in a private temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

FORBIDDEN_PORT = 6379


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


def free_port() -> int:
    """A TCP port nobody listens on right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != FORBIDDEN_PORT:
            return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RedisServer:
    """One private redis-server. ``start()``/``stop()`` may be called repeatedly; the port stays."""

    def __init__(self, port: int | None = None, *, startup_timeout: float = 10.0) -> None:
        binary = redis_server_binary()
        if binary is None:
            pytest.skip("redis-server is not installed", allow_module_level=True)
        if port == FORBIDDEN_PORT:
            raise ValueError("tests must never use the default Redis port 6379")
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="methtrader-redis-"))
        self.logfile = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.logfile),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # only sets a signal: safe between fork and exec
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self.ping():
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{self.startup_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.01)
        return self

    def ping(self, timeout: float = 0.2) -> bool:
        return self._command(b"PING", timeout) == b"+PONG"

    def stop(self) -> None:
        """SHUTDOWN NOSAVE (all data is lost), falling back to SIGTERM then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._command(b"SHUTDOWN NOSAVE", 1.0)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._kill()
        self._proc = None

    def kill(self) -> None:
        """Chaos: SIGKILL the server (no shutdown, clients see a reset)."""
        self._kill()

    def freeze(self) -> None:
        """Chaos: SIGSTOP the server — connections stay open but nothing answers."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.thaw()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        self._proc = None

    def _command(self, command: bytes, timeout: float) -> bytes | None:
        """Send one inline command; return the first reply line (None if nothing answered)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.sendall(command + b"\r\n")
                return s.recv(64).split(b"\r\n", 1)[0]
        except OSError:
            return None
